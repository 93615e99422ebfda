"""Which ``package.module:factory`` paths a run may import: those the user vouched for.

A model, generator or inverter file may name a factory (``model.arch`` = ``pkg.mod:fn``); such a
file can come from a client an audit distrusts, and importing the module runs its code with the
auditor's rights. So every factory import asks the run's :class:`CodeTrust` first, and the
default trusts nothing. The command line builds the policy from its own options (``--model`` and
``--generator`` name the user's code; ``--trust-code`` trusts whatever the files name); in Python::

    with trust_code("mypkg.nets:make"):
        model = model_from_update(load_update("u.safetensors"))
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from gradinvert.runtime.errors import InvalidInputError


@dataclass(frozen=True)
class CodeTrust:
    """The factories that may be imported (``everything``: any a file names)."""

    factories: frozenset[str] = frozenset()
    everything: bool = False

    def allows(self, factory: str) -> bool:
        return self.everything or factory in self.factories

    def including(self, other: CodeTrust) -> CodeTrust:
        """This policy widened by ``other``."""
        return CodeTrust(self.factories | other.factories, self.everything or other.everything)


NOTHING = CodeTrust()  # the default: no file may name code
_POLICY: ContextVar[CodeTrust] = ContextVar("gradinvert_code_trust", default=NOTHING)


def current_trust() -> CodeTrust:
    """The policy in force here (by default nothing is trusted)."""
    return _POLICY.get()


@contextlib.contextmanager
def trusting(policy: CodeTrust) -> Iterator[CodeTrust]:
    """Widen the policy by ``policy`` for the ``with`` block (this thread or task only)."""
    token = _POLICY.set(current_trust().including(policy))
    try:
        yield _POLICY.get()
    finally:
        _POLICY.reset(token)


def trust_code(*factories: str, everything: bool = False) -> contextlib.AbstractContextManager:
    """Trust ``factories`` (``package.module:factory`` paths you wrote) inside a ``with`` block;
    ``everything=True`` trusts any factory a file names (only for files you made yourself)."""
    return trusting(CodeTrust(frozenset(factories), everything))


def named_factories(values: Iterable[object]) -> frozenset[str]:
    """The ``package.module:factory`` paths among option values (other values are ignored)."""
    return frozenset(v for v in values if isinstance(v, str) and ":" in v)


class UntrustedCodeError(InvalidInputError):
    """A file names code that nobody vouched for (exit 65); nothing was imported."""

    def __init__(self, factory: str, origin: str | None, own: str) -> None:
        if origin is not None:
            message = (
                f"{origin}: names code ({factory}); pass --trust-code to run it, or {own} if it "
                "is your own"
            )
        else:
            message = (
                f"{factory} is code nobody vouched for: name it on the command line ({own}) or, "
                f"in Python, import it inside gradinvert.models.trust_code({factory!r})"
            )
        super().__init__(message)
        self.factory = factory


def require_trusted(factory: str, origin: str | None, own: str) -> None:
    """Raise :class:`UntrustedCodeError` unless the policy trusts ``factory``.

    ``origin``: the file that names it (None: a caller named it); ``own``: the command-line
    words that vouch for it, for the message (e.g. ``--model pkg.mod:fn``).
    """
    if not current_trust().allows(factory):
        raise UntrustedCodeError(factory, origin, own)
