"""An attack's config entry, normalised once into what to run and what to record.

The config names the method (``method``, by default the attack's own name,
filled in by ``advfit.config``), its parameters, and for built-in attacks with
a targeted form a ``target`` choice. Every job reads its entry through
:meth:`AttackSpec.from_config`, so no script or science module pops keys. A
plugin's time limit per call (``limits.plugin_timeout_s``) comes from the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PLUGIN = "plugin"
UNTARGETED = "none"


@dataclass(frozen=True)
class AttackSpec:
    name: str                    # the key under ``attacks`` in the config
    method: str                  # a registered attack, or ``plugin``
    params: dict                 # the attack function's keywords
    target: str = UNTARGETED     # none | random | next (built-in targeted attacks)
    function: str | None = None  # plugins: "file.py:function" or "module:function"
    record: dict = field(default_factory=dict)  # the entry less method, as artefacts record it
    timeout_s: float | None = None  # plugins: the limit of one call; None: none

    @classmethod
    def from_config(cls, name: str, entry: dict, *,
                    timeout_s: float | None = None) -> AttackSpec:
        """``timeout_s``: ``limits.plugin_timeout_s``, for a plugin (ignored otherwise)."""
        entry = dict(entry)
        method = entry.get("method", name)
        record = {key: value for key, value in entry.items() if key != "method"}
        if method == PLUGIN:
            return cls(name, method, dict(entry.get("params") or {}),
                       function=entry["function"], record=record, timeout_s=timeout_s)
        params = {key: value for key, value in record.items() if key != "target"}
        return cls(name, method, params, entry.get("target", UNTARGETED), record=record)

    @property
    def label(self) -> str:
        """How logs name it: the method, or the plugin's function."""
        return self.function if self.method == PLUGIN else self.method
