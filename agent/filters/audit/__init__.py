"""``audit``: mark records that show someone inside a container or on a node where they should
not be (exec sessions, shells, package managers, su/sudo, SSH logins and brute force, reads of
secrets, user and group changes).

Rules come from the default set shipped in this package (``default_rules.toml``) and an
optional ``rules_file``; docs/filters.md describes the format. A matching record gets
``audit = {rule, severity, description[, fields][, matched]}`` for its most severe matching
rule, and (``retag``) it also goes out under the tag ``audit.<rule id>``.

``config``: the filter's keys. ``rules``: the rule model and which rules are on. ``engine``: rules
compiled into tests over a record, stateful counting. ``filter``: the filter itself.
"""

from agent.filters.audit.config import AuditConfig
from agent.filters.audit.filter import AuditFilter
from agent.filters.audit.rules import default_rules_text, load_rules_text

__all__ = ["AuditConfig", "AuditFilter", "default_rules_text", "load_rules_text"]
