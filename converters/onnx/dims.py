"""Symbolic dimensions for shape inference at conversion time.

A dimension is an ``int`` or a ``Dim``: a product ``coef * s1 * s2 ...`` of named symbols. Symbols come from the
graph inputs: a named dimension (``dim_param``) is *hard* (always stays symbolic); a fixed dimension becomes a *soft*
symbol that remembers its declared value and is bound back to it the moment the graph relies on that value (a
Reshape to a literal shape, say). Soft symbols that nothing binds stay free: the model then accepts any size there,
which is what lets a model exported with a fixed sequence length be streamed one step at a time.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ConversionError


@dataclass(frozen=True)
class Dim:
    coef: int
    syms: tuple  # sorted symbol names, with repetition

    def __str__(self):
        parts = ([str(self.coef)] if self.coef != 1 else []) + list(self.syms)
        return "*".join(parts) if parts else "1"


class Shapes:
    """Symbol table with union-find bindings (symbol -> int or other symbol)."""

    def __init__(self):
        self.bound: dict = {}       # sym -> int | str
        self.soft: dict = {}        # sym -> declared value
        self.names: list = []
        self._n = 0

    def new(self, name: str | None = None, soft_value: int | None = None) -> Dim:
        if name is None or name in self.names:
            base = name or "d"
            self._n += 1
            while f"{base}{self._n}" in self.names:
                self._n += 1
            name = f"{base}{self._n}"
        self.names.append(name)
        if soft_value is not None:
            self.soft[name] = soft_value
        return Dim(1, (name,))

    # ------------------------------------------------------------ normal form
    def _find(self, s):
        seen = []
        while isinstance(s, str) and s in self.bound:
            seen.append(s)
            s = self.bound[s]
        for x in seen[:-1]:
            self.bound[x] = s
        return s

    def norm(self, d):
        if isinstance(d, int):
            return d
        coef = d.coef
        syms = []
        for s in d.syms:
            r = self._find(s)
            if isinstance(r, int):
                coef *= r
            else:
                syms.append(r)
        return coef if not syms else Dim(coef, tuple(sorted(syms)))

    def single_sym(self, d):
        d = self.norm(d)
        if isinstance(d, Dim) and d.coef == 1 and len(d.syms) == 1:
            return d.syms[0]
        return None

    # ------------------------------------------------------------ arithmetic
    def mul(self, a, b):
        a, b = self.norm(a), self.norm(b)
        if isinstance(a, int) and isinstance(b, int):
            return a * b
        da = a if isinstance(a, Dim) else Dim(a, ())
        db = b if isinstance(b, Dim) else Dim(b, ())
        return self.norm(Dim(da.coef * db.coef, tuple(sorted(da.syms + db.syms))))

    def div(self, a, b):
        """Exact division; None if it cannot be expressed."""
        a, b = self.norm(a), self.norm(b)
        if isinstance(a, int) and isinstance(b, int):
            return a // b if b and a % b == 0 else None
        da = a if isinstance(a, Dim) else Dim(a, ())
        db = b if isinstance(b, Dim) else Dim(b, ())
        if db.coef == 0 or da.coef % db.coef:
            return None
        syms = list(da.syms)
        for s in db.syms:
            if s not in syms:
                return None
            syms.remove(s)
        return self.norm(Dim(da.coef // db.coef, tuple(sorted(syms))))

    def prod(self, dims):
        out = 1
        for d in dims:
            out = self.mul(out, d)
        return out

    # ------------------------------------------------------------ constraints
    def equal(self, a, b) -> bool:
        return self.norm(a) == self.norm(b)

    def unify(self, a, b, what: str):
        """Record that a == b (binding symbols); raise ConversionError if they cannot be equal."""
        a, b = self.norm(a), self.norm(b)
        if a == b:
            return
        sa, sb = self.single_sym(a), self.single_sym(b)
        if sa is not None and (sb is None or sa in self.soft or sb not in self.soft):
            self._bind(sa, b, what)
        elif sb is not None:
            self._bind(sb, a, what)
        elif isinstance(a, int) and isinstance(b, int):
            raise ConversionError(f"{what}: dimension {a} does not match {b}")
        else:
            # products of symbols: bind the soft symbols to their declared values and retry once
            changed = self.concretize(a) | self.concretize(b)
            if changed:
                self.unify(a, b, what)
            # otherwise the relation cannot be checked here; the engine checks it at run time

    def _bind(self, sym, value, what):
        value = self.norm(value)
        if isinstance(value, int):
            self.bound[sym] = value
        elif isinstance(value, Dim) and value.coef == 1 and len(value.syms) == 1:
            other = value.syms[0]
            # keep a hard symbol as the representative
            if sym in self.soft or other not in self.soft:
                self.bound[sym] = other
            else:
                self.bound[other] = sym
        else:
            if sym in self.soft:
                self.bound[sym] = self.soft[sym]
                self.unify(self.soft[sym], value, what)
            # a hard symbol equal to a product: leave it to the run-time checks

    def concretize(self, d) -> bool:
        """Bind every soft symbol in d to its declared value. Returns True if anything changed."""
        d = self.norm(d)
        changed = False
        if isinstance(d, Dim):
            for s in d.syms:
                if s in self.soft and s not in self.bound:
                    self.bound[s] = self.soft[s]
                    changed = True
        return changed

    def export(self, d):
        """A dimension for a TensorSpec: an int, or the symbol's name (products become a joined name)."""
        d = self.norm(d)
        if isinstance(d, int):
            return d
        return str(d)
