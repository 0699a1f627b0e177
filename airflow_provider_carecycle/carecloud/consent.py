"""What a CareCloud customer's consents and account state say about contacting them: careCycle's do-not-contact flags.

CareCloud keeps, per customer, ``state`` (0 deleted, 1 active, 2 non active) and ``personal_information.consents``
(``[{consent_id, consent_value}]``: 0 withdrawn, 1 given, 2 not set), or on older records only the deprecated
``personal_information.agreement`` block (``agreement_marketing_communication`` and the others, the same values;
``consents`` wins when both are present). careCycle's leads carry ``doNotCall``, ``doNotSMS``, ``doNotEmail`` and
``doNotMail``. The rules (``docs/operators/consent.md``):

* a deleted customer (``state`` 0) is do-not-contact on every channel;
* a withdrawn consent sets the flags it governs: ``consent_mapping`` maps a consent's ``text_id`` to the flags it
  governs (default :data:`DEFAULT_CONSENT_MAPPING`: the marketing-communication consent governs calls, SMS and e-mail,
  as CareCloud has no telephone channel; withdrawn processing of personal data stops every contact), and a consent tied
  to a communication channel in :data:`CHANNEL_FLAGS` (SMS, e-mail, White Post) governs that channel's flag unless
  ``consent_mapping`` names it;
* a governing consent that is not set (2, or absent) follows ``unset_consent``: ``"call"`` (default) leaves the flags
  clear, ``"do_not_call"`` treats it as withdrawn;
* a non-active customer (``state`` 2) follows ``inactive``: ``"call"`` (default) or ``"do_not_call"`` (sets
  ``doNotCall``);
* in doubt, do not call: an account state or consent value outside the documented ones counts as ``doNotCall``
  (and as withdrawn).

The catalogue (``consent_id`` -> ``text_id``, and each consent's channel) is read once per run
(:meth:`ConsentRules.resolve`: one ``GET /agreements`` and one ``GET /communication-channels`` request); the rules
then judge any number of customers without a request.

>>> rules = ConsentRules({"c-mkt": ("doNotCall", "doNotSMS", "doNotEmail")}, {"agreement_marketing_communication":
...     ("doNotCall", "doNotSMS", "doNotEmail")})
>>> rules.flags({"state": 1, "personal_information": {"consents": [{"consent_id": "c-mkt", "consent_value": 0}]}})
('doNotCall', 'doNotEmail', 'doNotSMS')
>>> rules.flags({"state": 0})
('doNotCall', 'doNotEmail', 'doNotMail', 'doNotSMS')
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from airflow_provider_carecycle.vocabulary import DO_NOT_CONTACT_FLAGS

if TYPE_CHECKING:
    from airflow_provider_carecycle.carecloud.hook import CareCloudCrmHook

CONSENT_WITHDRAWN, CONSENT_GIVEN, CONSENT_NOT_SET = 0, 1, 2
STATE_DELETED, STATE_ACTIVE, STATE_INACTIVE = 0, 1, 2
#: the values of ``unset_consent`` and ``inactive``
POLICIES = ("call", "do_not_call")

DEFAULT_CONSENT_MAPPING: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "marketing_communication": ("doNotCall", "doNotSMS", "doNotEmail"),
        "personal_data_processing": DO_NOT_CONTACT_FLAGS,
    }
)
"""consent ``text_id`` -> the careCycle flags a withdrawal sets. The ``text_id`` values are the CareCloud emulator's;
a project whose consents carry others passes its own ``consent_mapping`` (a key the CRM does not list is an error)."""

CHANNEL_FLAGS: Mapping[str, str] = MappingProxyType(
    {"sms": "doNotSMS", "email": "doNotEmail", "white_post": "doNotMail"}
)
"""communication channel ``text_id`` -> the flag a withdrawn consent tied to that channel sets (unless
``consent_mapping`` names the consent)."""

#: the deprecated ``agreement`` block's fixed keys -> the consent ``text_id`` each stands for
AGREEMENT_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "agreement_gtc": "personal_data_processing",
        "agreement_profiling": "profiling",
        "agreement_marketing_communication": "marketing_communication",
    }
)


def check_consent_mapping(mapping: Any, argument: str = "consent_mapping") -> dict[str, tuple[str, ...]]:
    """``consent_mapping`` checked: consent ``text_id`` -> a flag name or a list of flag names.

    :param mapping: the rendered argument.
    :param argument: its name, for the message.
    :raises ValueError: naming the argument and the bad key.
    """
    if not isinstance(mapping, Mapping) or not mapping:
        raise ValueError(f"{argument} must be a non-empty mapping of consent text_id -> careCycle flag(s).")
    checked: dict[str, tuple[str, ...]] = {}
    for text_id, flags in mapping.items():
        names = (flags,) if isinstance(flags, str) else tuple(flags) if isinstance(flags, (list, tuple)) else None
        if not isinstance(text_id, str) or not text_id or not names:
            raise ValueError(f"{argument}[{text_id!r}]: map a consent text_id to a flag or a list of flags.")
        unknown = [name for name in names if name not in DO_NOT_CONTACT_FLAGS]
        if unknown:
            raise ValueError(
                f"{argument}[{text_id!r}]: {unknown[0]!r} is not a careCycle flag; use "
                f"{', '.join(DO_NOT_CONTACT_FLAGS)}."
            )
        checked[text_id] = tuple(dict.fromkeys(names))
    return checked


def check_policy(name: str, value: Any) -> str:
    """``unset_consent``/``inactive`` checked.

    :raises ValueError: for a value other than ``"call"`` and ``"do_not_call"``.
    """
    if value not in POLICIES:
        raise ValueError(f"{name} must be 'call' or 'do_not_call', got {value!r}.")
    return str(value)


class ConsentRules:
    """The do-not-contact rules of one run, with the consent catalogue resolved (see the module docstring).

    Build it with :meth:`resolve` (reads the CRM's catalogue) or directly from resolved maps (tests, other sources).

    :param by_consent_id: ``consent_id`` -> the flags its withdrawal sets.
    :param by_agreement_key: deprecated ``agreement`` key (or a custom agreement's ``agreement_id``) -> flags.
    :param unset_consent: ``"call"`` or ``"do_not_call"``, for a governing consent not set (2) or absent.
    :param inactive: ``"call"`` or ``"do_not_call"``, for a non-active customer (``state`` 2).
    """

    def __init__(
        self,
        by_consent_id: Mapping[str, Iterable[str]],
        by_agreement_key: Mapping[str, Iterable[str]] | None = None,
        *,
        unset_consent: str = "call",
        inactive: str = "call",
    ) -> None:
        self.by_consent_id = {str(k): tuple(v) for k, v in by_consent_id.items()}
        self.by_agreement_key = {str(k): tuple(v) for k, v in (by_agreement_key or {}).items()}
        self.unset_consent = check_policy("unset_consent", unset_consent)
        self.inactive = check_policy("inactive", inactive)
        #: why customers were found not contactable, counted (PHI-free, for the log)
        self.reasons: Counter[str] = Counter()

    @classmethod
    def resolve(
        cls,
        hook: CareCloudCrmHook,
        consent_mapping: Mapping[str, Any] | None = None,
        *,
        unset_consent: str = "call",
        inactive: str = "call",
    ) -> ConsentRules:
        """Read the CRM's consent catalogue and channels once and build the rules.

        :param hook: the CareCloud CRM hook.
        :param consent_mapping: consent ``text_id`` -> flag(s) (default :data:`DEFAULT_CONSENT_MAPPING`).
        :param unset_consent: see the class.
        :param inactive: see the class.
        :raises ValueError: when ``consent_mapping`` names a ``text_id`` the CRM does not list.
        """
        mapping = check_consent_mapping(DEFAULT_CONSENT_MAPPING if consent_mapping is None else consent_mapping)
        channels = {
            str(c.get("communication_channel_id")): str(c.get("text_id")) for c in hook.iter_communication_channels()
        }
        by_consent_id: dict[str, tuple[str, ...]] = {}
        by_text_id: dict[str, tuple[str, ...]] = {}
        custom: dict[str, tuple[str, ...]] = {}  # consents the deprecated block lists by agreement_id
        for consent in hook.iter_consents():
            text_id, consent_id = consent.get("text_id"), consent.get("agreement_id")
            if not isinstance(consent_id, str) or not consent_id:
                continue
            flags = mapping.get(text_id) if isinstance(text_id, str) else None
            if flags is None:
                channel_flag = CHANNEL_FLAGS.get(channels.get(str(consent.get("communication_channel_id")), ""))
                flags = (channel_flag,) if channel_flag else None
            if flags:
                by_consent_id[consent_id] = flags
                if isinstance(text_id, str):
                    by_text_id[text_id] = flags
                if text_id not in AGREEMENT_KEYS.values():
                    custom[consent_id] = flags
        missing = sorted(set(mapping) - set(by_text_id))
        if missing:
            raise ValueError(
                f"consent_mapping names consent text_id {missing[0]!r}, which the CRM's consent catalogue (GET "
                f"/agreements) does not list (it lists {len(by_text_id)} mapped of its consents). Set consent_mapping "
                "to the text_id values of your CareCloud project's consents."
            )
        by_agreement_key = {
            key: by_text_id[text_id] for key, text_id in AGREEMENT_KEYS.items() if text_id in by_text_id
        }
        by_agreement_key.update(custom)
        return cls(by_consent_id, by_agreement_key, unset_consent=unset_consent, inactive=inactive)

    def flags(self, customer: Mapping[str, Any]) -> tuple[str, ...]:
        """The do-not-contact flags ``customer`` calls for, sorted (empty: it may be contacted on every channel).

        :param customer: a customer as ``GET /customers`` returns it.
        """
        state = customer.get("state")
        if state == STATE_DELETED and not isinstance(state, bool):
            self.reasons["deleted"] += 1
            return tuple(sorted(DO_NOT_CONTACT_FLAGS))
        flags: set[str] = set()
        if isinstance(state, bool) or state not in (STATE_ACTIVE, STATE_INACTIVE):
            self.reasons["unknown account state"] += 1
            flags.add("doNotCall")
        elif state == STATE_INACTIVE and self.inactive == "do_not_call":
            self.reasons["non active"] += 1
            flags.add("doNotCall")
        values, governing = self._values(customer)
        for key, governed in governing.items():
            value = values.get(key, CONSENT_NOT_SET)
            if value == CONSENT_WITHDRAWN and not isinstance(value, bool):
                self.reasons["consent withdrawn"] += 1
                flags.update(governed)
            elif value == CONSENT_NOT_SET and not isinstance(value, bool):
                if self.unset_consent == "do_not_call":
                    self.reasons["consent not set"] += 1
                    flags.update(governed)
            elif value != CONSENT_GIVEN or isinstance(value, bool):
                self.reasons["unknown consent value"] += 1
                flags.update(governed)
        return tuple(sorted(flags))

    def _values(self, customer: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
        """The customer's consent values by key, and the governing keys: the ``consents`` list when present, else the
        deprecated ``agreement`` block."""
        info = customer.get("personal_information")
        info = info if isinstance(info, Mapping) else {}
        consents = info.get("consents")
        if isinstance(consents, list):
            values = {str(c.get("consent_id")): c.get("consent_value") for c in consents if isinstance(c, Mapping)}
            return values, self.by_consent_id
        agreement = info.get("agreement")
        agreement = agreement if isinstance(agreement, Mapping) else {}
        values = {key: agreement.get(key) for key in AGREEMENT_KEYS if key in agreement}
        custom = agreement.get("custom_agreements")
        for item in custom if isinstance(custom, list) else ():
            if isinstance(item, Mapping):
                values[str(item.get("agreement_id"))] = item.get("agreement_value")
        return values, self.by_agreement_key


__all__ = [
    "AGREEMENT_KEYS",
    "CHANNEL_FLAGS",
    "DEFAULT_CONSENT_MAPPING",
    "ConsentRules",
    "check_consent_mapping",
    "check_policy",
]
