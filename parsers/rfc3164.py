"""RFC 3164 messages and their relatives as found in the wild (no PRI, Cisco sequence numbers
and zone names, RFC 3339 stamps, Docker's tag formats): the regexes the hot loop matches and why a
message matched neither."""

from __future__ import annotations

import re

from parsers.syslog_pri import PRI_PREFIX, pri_info
from parsers.syslog_time import MONTHS

__all__ = ["RFC3164", "RFC3164_COMMON", "reason_3164"]

_MONTH_ANY_CASE = "(?i:" + "|".join(name.lower() for name in MONTHS) + ")"
# After the timestamp: [HOSTNAME SP] [TAG SP] MSG. The first token is the hostname unless it
# ends with ":" or "]" (then it is the tag: local senders and Docker's default format send no
# hostname). A tag token is "name:", "name[pid]:", "name[pid]" (rsyslog writes that for messages
# it received as RFC 5424) or "name[pid" (rsyslog's %syslogtag:1:32% cut it); the name may hold
# ":" "/" "{}" (Docker tag templates) but not "[" or spaces. The possessive \S++ keeps the
# hostname test from backtracking into the token.
#
# Nothing here backtracks that cannot need to: a repeat of one character is possessive (``*+``,
# ``{m,n}+``) and an optional group is atomic, written ``(?>X|)`` (X, else nothing, never
# reconsidered). The matches are the same, but re keeps no backtracking context for them (for a
# greedy repeat or optional group it keeps one on its stack for the rest of the match, and an
# optional group also costs an allocation), so a line fits in re's first stack block instead of
# paying a second allocation and a copy. Not ``(?:X)?+``: CPython 3.11.0-3.11.4 keep what a failed
# attempt at a possessive group consumed (gh-106052; Debian 12's 3.11.2 has it) and 3.11 raises
# SystemError for some with groups and alternatives (gh-101955); atomic groups and possessive
# single characters are right there. Why nothing here can need to give back: this tail matches at a
# position exactly when the character there is a space or the end of the text (MSG takes the rest),
# and the hostname and the tag groups each end with a lookahead for just that, so once either has
# matched the rest cannot fail; the pid stops at "]", a space or "\n", and a shorter pid would
# leave a pid character or "]" (never a space or the end) after the optional "]" and ":", which the
# lookahead rejects, and so would skipping a "]" or ":" that is there; ".*" takes everything before
# "\Z" (DOTALL). Not possessive: the tag name, whose last character must not be ":" ("name:" gives
# the ":" back), and what is inside the lookarounds.
_HOST_TAG_MESSAGE = (
    r"(?> (\S++)(?<![:\]])(?![^ ])|)"  # HOSTNAME, followed by SP or the end (rsyslog)
    r"(?> ([^ \n\[]*[^ \n\[:])(?:\[([^\] \n]*+)\]?+:?+|:)(?= |\Z)|)"  # TAG[PID]:
    r"(?: |\Z)(.*+)\Z"  # MSG
)
# Possessive and atomic throughout, like the tail above: no part can need to give back. A character
# given back would stand where something else must: the PRI's digits before ">", the sequence
# number's before ": ", a second space before the day's digits, the day's and the year's digits
# before a space, the digits after the seconds (a fraction and the digits dropped after it, which
# end at the same place however they split) where the tail needs a space, ":" or the end; so would
# a zone letter before ": %" and an offset's ":" before its digits. An optional part that was
# taken, left out, would leave a character that nothing after it can start with: "<", the sequence
# number (digits followed by ":", never a stamp's "dddd-"), "*" or ".", a space before the month (a
# stamp starts with a letter or a digit), a year where the time's "dd:" must be, "." before a
# fraction, "Z" or an offset's sign, a ":" where the tail needs a space or the end. A Cisco zone,
# once taken, is followed by ": ", and from that space the tail always matches.
RFC3164 = re.compile(
    r"(?><(\d{1,3}+)>|)"  # PRI, optional (rsyslog's file format and some senders omit it)
    r"(?>\d{1,10}+: |)[*.]?+"  # vendor prefixes: Cisco's sequence number, clock-sync markers
    # Nov 29 ..., month names in any case (rsyslog reads "AUG" too); one space between the PRI
    # and such a stamp is skipped (rsyslog does; not before an RFC 3339 stamp, nor two spaces)
    r"(?:(?>(?<=>) |)((?:[A-Z][a-z]{2}+|" + _MONTH_ANY_CASE + r") {1,2}+\d{1,2}+ (?>\d{4}+ |)"
    r"\d\d:\d\d:\d\d)((?>\.\d{1,6}+|))\d*+"
    r"|(\d{4}+-\d\d-\d\dT\d\d:\d\d:\d\d)((?>\.\d{1,6}+|))\d*+(?>(Z|[+-]\d\d:?+\d\d)|))"  # RFC 3339
    # Cisco: " UTC: %FAC-SEV-MNEMONIC" after the stamp. The "%" keeps a 3164 tag such as
    # "CRON:" or "AAA:" from being taken for a zone name.
    r"(?> [A-Z]{3,4}+(?=: %)|):?+" + _HOST_TAG_MESSAGE,
    re.DOTALL | re.ASCII,
)
# The shape Docker and rsyslog send most (<PRI>Mmm dd hh:mm:ss ...), tried first because its
# short prefix is cheaper to match and it has fewer groups to extract. Possessive for the same
# reasons as RFC3164 (a fixed repeat such as {2} is a repeat to re too).
RFC3164_COMMON = re.compile(
    r"<(\d{1,3}+)>([A-Z][a-z]{2}+ [ \d]\d \d\d:\d\d:\d\d)" + _HOST_TAG_MESSAGE,
    re.DOTALL | re.ASCII,
)


def reason_3164(text: str) -> str:
    """The ``parse_error`` of a message that is no RFC 3164 message either."""
    if not text:
        return "empty message"
    if text.startswith("<"):
        pri = PRI_PREFIX.match(text)
        if pri is None or pri_info(pri.group(1)) is None:
            return "invalid PRI"
    return "no RFC 3164 timestamp"
