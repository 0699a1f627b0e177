"""Phone numbers careCycle can dial: parsed with ``phonenumbers``, checked for validity, region and type, sent E.164.

The table holds the forms agencies' CRMs export and the numbers a hand-written NANP pattern got wrong (issue 23).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from airflow_provider_carecycle.leads import LeadFieldError, LeadValidator, normalize_phone
from airflow_provider_carecycle.leads import phone as phone_module
from airflow_provider_carecycle.leads.phone import (
    DEFAULT_ALLOWED_NUMBER_TYPES,
    DEFAULT_ALLOWED_REGIONS,
    NUMBER_TYPES,
    PhoneRule,
    check_allowed_number_types,
    check_allowed_regions,
    parse_phone,
)
from airflow_provider_carecycle.leads.text import ascii_digits

NY = "+12125550142"
OK = "ok"
INVALID = "invalid_phone_number"
FORMAT = "invalid_format"
REGION = "region_not_allowed"
TYPE = "number_type_not_allowed"

# (written, expected code or OK, E.164 when OK)
TABLE: list[tuple[Any, str, str | None]] = [
    # every common written form of one New York number
    ("(212) 555-0142", OK, NY),
    ("212-555-0142", OK, NY),
    ("212.555.0142", OK, NY),
    ("212 555 0142", OK, NY),
    ("2125550142", OK, NY),
    ("12125550142", OK, NY),
    ("1-212-555-0142", OK, NY),
    ("1 (212) 555-0142", OK, NY),
    ("+1 212 555 0142", OK, NY),
    ("+1 (212) 555-0142", OK, NY),
    ("+1.212.555.0142", OK, NY),
    ("+12125550142", OK, NY),
    ("212/555-0142", OK, NY),
    ("212\u2013555\u20130142", OK, NY),  # en dashes
    ("  212 555 0142\u00a0", OK, NY),  # surrounding spaces, a no-break space
    ("011 1 212 555 0142", OK, NY),  # dialled from the US with the international prefix
    # extensions: dropped from the number dialled
    ("212-555-0142 x12", OK, NY),
    ("212-555-0142 ext. 12", OK, NY),
    ("212-555-0142 extension 12", OK, NY),
    ("+1 212-555-0142 x 7", OK, NY),
    ("(212) 555-0142 #12", OK, NY),
    ("212 555 0142;ext=3", OK, NY),
    # tel: URIs (RFC 3966)
    ("tel:+1-212-555-0142", OK, NY),
    ("tel:+1-212-555-0142;ext=12", OK, NY),
    # Unicode digits, converted to ASCII first
    ("\uff12\uff11\uff12\uff15\uff15\uff15\uff10\uff11\uff14\uff12", OK, NY),  # full-width
    ("(\uff12\uff11\uff12) \uff15\uff15\uff15-\uff10\uff11\uff14\uff12", OK, NY),
    ("\u0662\u0661\u0662\u0665\u0665\u0665\u0660\u0661\u0664\u0662", OK, NY),  # Arabic-Indic
    ("\u06f2\u06f1\u06f2\u06f5\u06f5\u06f5\u06f0\u06f1\u06f4\u06f2", OK, NY),  # extended Arabic-Indic
    ("\u0968\u0967\u0968\u096b\u096b\u096b\u0966\u0967\u096a\u0968", OK, NY),  # Devanagari
    # numbers, as databases hand them over
    (2125550142, OK, NY),
    (12125550142, OK, NY),
    (2125550142.0, OK, NY),
    # the US territories that share +1, allowed by default
    ("(787) 555-0142", OK, "+17875550142"),  # PR
    ("(340) 774-0142", OK, "+13407740142"),  # VI
    ("(671) 555-0142", OK, "+16715550142"),  # GU
    ("(684) 633-0142", OK, "+16846330142"),  # AS
    ("(670) 234-0142", OK, "+16702340142"),  # MP
    ("(646) 555-0100", OK, "+16465550100"),
    ("(202) 555-0142", OK, "+12025550142"),
    # numbers the numbering plan does not have
    ("(911) 555-0142", INVALID, None),  # N11 service codes are not area codes
    ("(411) 555-0142", INVALID, None),
    ("(555) 555-0142", INVALID, None),  # 555 is not an area code
    ("(370) 555-0142", INVALID, None),  # unassigned
    ("+1 (999) 555-0142", INVALID, None),
    ("+1 (456) 555-0142", INVALID, None),
    ("(212) 055-0142", INVALID, None),  # an exchange cannot start with 0 or 1
    ("(212) 155-0142", INVALID, None),
    ("0125550142", INVALID, None),
    ("1125550142", INVALID, None),
    ("(684) 555-0142", INVALID, None),  # AS has no such exchange
    ("212555014", INVALID, None),  # nine digits
    ("212555014299", INVALID, None),  # twelve
    ("22125550142", INVALID, None),
    ("+2125550142", INVALID, None),  # +21 is no country code
    ("+999 1234", INVALID, None),
    ("212 555 0142 or 646 555 0100", INVALID, None),  # two numbers in one cell
    # not a number at all
    ("call me", FORMAT, None),
    ("n/a", FORMAT, None),
    ("-", FORMAT, None),
    (-2125550142, FORMAT, None),
    # +1 numbers outside the US and its territories, and other countries
    ("+1 416 555 0142", REGION, None),  # CA
    ("(604) 555-0142", REGION, None),  # CA
    ("876 555 0142", REGION, None),  # JM
    ("(809) 555-0142", REGION, None),  # DO
    ("+1 600 555 0142", REGION, None),  # a Canadian VoIP range: the region is checked first
    ("+44 20 7946 0958", REGION, None),  # GB
    ("011 44 20 7946 0958", REGION, None),
    ("+52 55 1234 5678", REGION, None),  # MX
    # number types that are not a prospect's line
    ("800-555-0142", TYPE, None),  # toll-free
    ("(888) 555-0142", TYPE, None),
    ("1-877-555-0142", TYPE, None),
    ("1 (800) 555 0142 x4", TYPE, None),
    ("1-800-FLOWERS", TYPE, None),  # a vanity toll-free number
    ("(900) 555-0142", TYPE, None),  # premium-rate
    ("(500) 555-0142", TYPE, None),  # personal (5XX)
]


def test_the_table_has_at_least_sixty_written_numbers() -> None:
    assert len(TABLE) >= 60
    assert {code for _, code, _ in TABLE} == {OK, INVALID, FORMAT, REGION, TYPE}


@pytest.mark.parametrize(("written", "code", "e164"), TABLE)
def test_each_written_number(written: Any, code: str, e164: str | None) -> None:
    result = LeadValidator().validate({"phoneNumber": written, "timezone": "EST"})
    if code == OK:
        assert result.ok, result.rejections
        assert result.lead == {"phoneNumber": e164, "timezone": "EST"}
        return
    assert result.lead is None
    [rejection] = result.rejections
    assert (rejection.field, rejection.code) == ("phoneNumber", code)
    assert rejection.reason.startswith("phoneNumber: ")
    assert not re.search(r"\d", rejection.reason), "a reason names no digit"


def test_the_reasons_say_what_is_wrong_and_what_to_change() -> None:
    def reason(written: str) -> str:
        with pytest.raises(LeadFieldError) as caught:
            normalize_phone(written)
        return str(caught.value)

    assert reason("+1 416 555 0142") == (
        "phoneNumber: region CA is not allowed (allowed_regions: US, PR, VI, GU, AS, MP)"
    )
    assert reason("800-555-0142") == (
        "phoneNumber: a toll-free number is not dialled "
        "(allowed_number_types: fixed_line, mobile, fixed_line_or_mobile)"
    )
    assert "premium-rate" in reason("(900) 555-0142")
    assert "numbering plan" in reason("(911) 555-0142")
    assert reason("call me") == "phoneNumber: not a phone number"


# ----------------------------------------------------------------------------------------------- policies


def test_a_canadian_number_is_dialled_when_the_user_allows_canada() -> None:
    rule = PhoneRule(allowed_regions=(*DEFAULT_ALLOWED_REGIONS, "CA"))
    assert normalize_phone("+1 416 555 0142", rule=rule) == "+14165550142"
    validator = LeadValidator(phone_rule=rule)
    assert validator.validate({"phoneNumber": "(604) 555-0142", "timezone": "PST"}).ok
    assert not validator.validate({"phoneNumber": "876 555 0142", "timezone": "EST"}).ok  # JM is still refused


def test_allowing_a_region_does_not_allow_the_us_unless_named() -> None:
    rule = PhoneRule(allowed_regions=("CA",))
    with pytest.raises(LeadFieldError, match="region US is not allowed"):
        normalize_phone(NY, rule=rule)


@pytest.mark.parametrize(
    ("written", "region", "number_type"),
    [
        ("800-555-0142", "US", "toll_free"),
        ("(900) 555-0142", "US", "premium_rate"),
        ("(500) 555-0142", "US", "personal_number"),
        ("+1 268 406 1234", "AG", "pager"),
        ("+1 868 619 1234", "TT", "voicemail"),
        ("+1 246 430 1234", "BB", "uan"),
        ("+1 268 480 1234", "AG", "voip"),
    ],
)
def test_each_refused_number_type_is_dialled_when_the_user_allows_it(written: str, region: str, number_type: str):
    assert number_type not in DEFAULT_ALLOWED_NUMBER_TYPES
    regions = (*DEFAULT_ALLOWED_REGIONS, region) if region not in DEFAULT_ALLOWED_REGIONS else DEFAULT_ALLOWED_REGIONS
    refused = PhoneRule(allowed_regions=regions)
    with pytest.raises(LeadFieldError) as caught:
        normalize_phone(written, rule=refused)
    assert caught.value.code == TYPE
    allowed = PhoneRule(allowed_regions=regions, allowed_number_types=(*DEFAULT_ALLOWED_NUMBER_TYPES, number_type))
    assert normalize_phone(written, rule=allowed).startswith("+1")


def test_shared_cost_is_a_known_type_though_no_plus_one_region_has_such_numbers() -> None:
    assert "shared_cost" in NUMBER_TYPES and "shared_cost" not in DEFAULT_ALLOWED_NUMBER_TYPES
    assert check_allowed_number_types("fixed_line, shared_cost") == ("fixed_line", "shared_cost")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("US,PR", ("US", "PR")),
        (" us , ca ", ("US", "CA")),
        (["US", "CA", "US"], ("US", "CA")),
        (("JM",), ("JM",)),
    ],
)
def test_allowed_regions_take_a_list_or_comma_separated_text(value: Any, expected: tuple[str, ...]) -> None:
    assert check_allowed_regions(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "at least one"),
        ([], "at least one"),
        ("US,XX", "not region codes"),
        ("US,GB", "do not share \\+1"),
        (["US", 1], "must hold text"),
        (5, "list of names"),
    ],
)
def test_bad_allowed_regions_are_errors_naming_the_argument(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        check_allowed_regions(value)
    assert str(caught.value).startswith("allowed_regions")


def test_bad_number_types_are_errors_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown number types landline; choose from fixed_line, mobile"):
        check_allowed_number_types("landline")


# ---------------------------------------------------------------------------------- identity and cache


def test_every_written_form_of_one_number_is_one_lead() -> None:
    validator = LeadValidator()
    written = [w for w, code, e164 in TABLE if code == OK and e164 == NY]
    identities = set()
    for form in written:
        lead = validator.validate({"phoneNumber": form, "timezone": "EST"}).lead
        assert lead is not None
        identities.add(validator.identity(lead))
    assert identities == {f"phone:{NY}"}
    assert len(written) >= 25


def test_the_identity_uses_the_validators_own_rule() -> None:
    """A lead the validator let through (a Canadian number, allowed) has an identity, not an error."""
    validator = LeadValidator(phone_rule=PhoneRule(allowed_regions=("US", "CA")))
    lead = validator.validate({"phoneNumber": "(416) 555-0142", "timezone": "EST"}).lead
    assert lead is not None and validator.identity(lead) == "phone:+14165550142"
    assert validator.identity({"phoneNumber": "416.555.0142"}) == "phone:+14165550142"


def test_a_parse_is_cached_by_the_written_form() -> None:
    phone_module._cached_parse.cache_clear()
    for _ in range(3):
        normalize_phone("(313) 555-0142")
        with pytest.raises(LeadFieldError):
            normalize_phone("(911) 555-0142")
    info = phone_module._cached_parse.cache_info()
    assert (info.misses, info.hits) == (2, 4)


def test_long_values_are_judged_but_not_kept_in_the_cache() -> None:
    """A hostile file of long phone values must not fill memory through the cache (65,536 of them kept)."""
    phone_module._cached_parse.cache_clear()
    long_text = "2125550142" + " " * 100_000
    assert normalize_phone(long_text) == NY  # judged as any other (phonenumbers reads at most 250 characters)
    with pytest.raises(LeadFieldError):
        normalize_phone("212 555 0142 " + "x" * 10_000)
    assert phone_module._cached_parse.cache_info().currsize == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\uff10\uff11\uff12", "012"),
        ("\u0660-\u0669", "0-9"),
        ("ZIP \u09e7\u09e8\u09e9\u09ea\u09eb", "ZIP 12345"),  # Bengali
        ("caf\u00e9 \u00bd \u00b2", "caf\u00e9 \u00bd \u00b2"),  # letters, fractions and superscripts are no digits
        ("plain 123", "plain 123"),
    ],
)
def test_ascii_digits(text: str, expected: str) -> None:
    assert ascii_digits(text) == expected


def test_the_plain_forms_read_without_parse_are_what_parse_makes_of_them() -> None:
    """``parse_phone`` reads the plainest NANP forms itself (half the cost); for every one of them, valid or not, the
    number is the one ``phonenumbers.parse`` gives, and so are the region, type and answer."""
    import phonenumbers

    forms = ["{a}{e}{l}", "1{a}{e}{l}", "+1{a}{e}{l}", "({a}) {e}-{l}", "{a}-{e}-{l}", "{a}.{e}.{l}", "+1 {a} {e} {l}",
             "1-{a}-{e}-{l}", "+1 ({a}) {e}-{l}", "1 {a} {e} {l}"]  # fmt: skip
    checked = 0
    for area in range(200, 1000, 7):
        for exchange in ("555", "015", "911", "234"):
            for form in forms:
                text = form.format(a=area, e=exchange, l="0142")
                assert phone_module._PLAIN_NANP.match(text), text
                number = phonenumbers.parse(text, "US")
                expected = (
                    phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                    if phonenumbers.is_valid_number(number)
                    else None
                )
                got = parse_phone(text)
                assert (got.e164 if not isinstance(got, Exception) else None) == expected, text
                if expected is not None:
                    assert not isinstance(got, Exception)
                    assert got.region == phonenumbers.region_code_for_number(number)
                checked += 1
    assert checked > 4000
