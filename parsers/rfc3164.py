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
_HOST_TAG_MESSAGE = (
    r"(?: (\S++)(?<![:\]])(?![^ ]))?"  # HOSTNAME, followed by SP or the end (rsyslog)
    r"(?: ([^ \n\[]*[^ \n\[:])(?:\[([^\] \n]*)\]?:?|:)(?= |\Z))?"  # TAG[PID]:
    r"(?: |\Z)(.*)\Z"  # MSG
)
RFC3164 = re.compile(
    r"(?:<(\d{1,3})>)?"  # PRI, optional (rsyslog's file format and some senders omit it)
    r"(?:\d{1,10}: )?[*.]?"  # vendor prefixes: Cisco's sequence number, clock-sync markers
    # Nov 29 ..., month names in any case (rsyslog reads "AUG" too); one space between the PRI
    # and such a stamp is skipped (rsyslog does; not before an RFC 3339 stamp, nor two spaces)
    r"(?:(?:(?<=>) )?((?:[A-Z][a-z]{2}|" + _MONTH_ANY_CASE + r") {1,2}\d{1,2} (?:\d{4} )?"
    r"\d\d:\d\d:\d\d)((?:\.\d{1,6})?)\d*"
    r"|(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)((?:\.\d{1,6})?)\d*(Z|[+-]\d\d:?\d\d)?)"  # or RFC 3339
    # Cisco: " UTC: %FAC-SEV-MNEMONIC" after the stamp. The "%" keeps a 3164 tag such as
    # "CRON:" or "AAA:" from being taken for a zone name.
    r"(?: [A-Z]{3,4}(?=: %))?:?" + _HOST_TAG_MESSAGE,
    re.DOTALL | re.ASCII,
)
# The shape Docker and rsyslog send most (<PRI>Mmm dd hh:mm:ss ...), tried first because its
# short prefix is cheaper to match and it has fewer groups to extract.
RFC3164_COMMON = re.compile(
    r"<(\d{1,3})>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)" + _HOST_TAG_MESSAGE,
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
