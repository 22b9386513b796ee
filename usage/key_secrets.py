"""Is an `api_key` value a key's secret or its name? (README "API keys".)

A value is taken for a **secret** (kept only as its SHA-256, shown with its last four when
it is long enough) when it looks like one:

1. it starts with an HTTP auth scheme (`Bearer `, `Basic `, `Token `; the part after it
   is the secret), or with a prefix providers give their keys (`sk-`, `tk-`, `pk-`,
   `rk-`, `toki_`, `ghp_`, `glpat-`, `xoxb-`, `hf_`, `AIza`, `AKIA`, a JWT's `eyJ` …);
2. or it is a UUID;
3. or, written without spaces, it holds a token-like run of 16 or more letters and digits:
   hexadecimal with both digits and letters, 12 or more digits, or one whose character
   class (lower, upper, digit) changes at least every third character (separators
   `- _ + / = . ~` are skipped, as base64url tokens use them), or six consonants in a row;
4. or it is one unbroken word of 20 characters or more, with a digit, whose characters
   carry 4.2 bits of entropy or more each (as random text does).

Anything else is a human-readable **name** and is kept as written ("batch-jobs",
"Growth team key", "ProductionBatchJobs"). `name:<x>` always declares a name.

It is a heuristic: a random token of 20 characters or more without a known prefix is
read as a name about 1 time in 100 (tests.usage.test_key_secrets measures it), a
random hexadecimal one never. Send such keys through the proxy (which never stores its
Authorization header, whatever its shape) or hash them before sending.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

SCHEMES = re.compile(r"^(?:bearer|basic|token)\s+(?=\S)", re.IGNORECASE)
SECRET_PREFIXES = (
    "sk-", "sk_", "tk-", "tk_", "pk-", "pk_", "rk-", "rk_", "toki_", "ghp_", "gho_", "ghs_", "ghu_",
    "github_pat_", "glpat-", "xoxb-", "xoxp-", "xoxa-", "hf_", "AIza", "AKIA", "ASIA", "eyJ",
)  # fmt: skip
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
RUN = re.compile(r"[A-Za-z0-9]{16,}")
SEPARATORS = re.compile(r"[-_+/=.~]")
HEX = re.compile(r"^[0-9a-fA-F]+$")
MIN_DIGITS_RUN = 12
MIN_ENTROPY_LENGTH = 20
MIN_ENTROPY_BITS = 4.2
CONSONANTS = re.compile(r"[b-df-hj-np-tv-xzB-DF-HJ-NP-TV-XZ]+")
MIN_CONSONANTS = 6
SAME_WORD = {("lower", "lower"), ("upper", "upper"), ("digit", "digit"), ("upper", "lower")}


def without_scheme(value: str) -> str:
    """ "Bearer sk-…" → "sk-…": the credential an Authorization-style value carries."""
    return SCHEMES.sub("", value.strip(), count=1)


def _token_like(run: str) -> bool:
    if HEX.match(run) and any(c.isdigit() for c in run) and any(c.isalpha() for c in run):
        return True
    if sum(c.isdigit() for c in run) >= MIN_DIGITS_RUN:
        return True
    # A character class (lower, upper, digit) that changes at least once every three
    # characters; a capital starting a word ("Batch") is not a change, so CamelCase names
    # of short words ("MyApiKeyForBatchJobs") stay names.
    changes = sum(1 for a, b in itertools.pairwise(run) if (_kind(a), _kind(b)) not in SAME_WORD)
    if changes * 3 >= len(run):
        return True
    # Words people read have vowels; six consonants in a row rarely happen outside a token.
    return any(len(cluster) >= MIN_CONSONANTS for cluster in CONSONANTS.findall(run))


def _kind(char: str) -> str:
    return "digit" if char.isdigit() else "upper" if char.isupper() else "lower"


def looks_like_secret(value: str) -> bool:
    """The rule of the module docstring."""
    value = value.strip()
    if SCHEMES.match(value):
        return True
    if value.startswith(SECRET_PREFIXES) or UUID.match(value):
        return True
    if any(c.isspace() for c in value):
        return False
    joined = SEPARATORS.sub("", value)  # base64url and friends break a token with - _ + /
    if any(_token_like(run) for run in RUN.findall(value) + RUN.findall(joined)):
        return True
    # One unbroken word of 20 or more letters and digits, as varied as random text.
    return (
        joined == value
        and len(value) >= MIN_ENTROPY_LENGTH
        and any(c.isdigit() for c in value)
        and _entropy(value) >= MIN_ENTROPY_BITS
    )


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())
