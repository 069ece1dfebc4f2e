#!/bin/sh
# Runs in the privileged init container of the audit-agent-node-setup DaemonSet, on every node.
# ACTION=install: puts $SNIPPET (from the ConfigMap, mounted at $SNIPPETS) into the host's
# /etc/rsyslog.d as 10-audit-agent.conf, which sorts before the distribution's rules so no
# "stop" of theirs hides a message from the agent. ACTION=uninstall removes it.
# Either way rsyslog is checked (rsyslogd -N1) and restarted only if the file changed; its
# disk-assisted queue is saved across the restart. A host whose rsyslog rejects the result
# gets its previous state back, and the pod fails with the reason in its log.
set -eu

ACTION="${ACTION:-install}"
SNIPPET="${SNIPPET:-rsyslog-audit-agent-relp.conf}"
SNIPPETS="${SNIPPETS:-/snippets}"
HOST_DIR="${HOST_DIR:-/host/etc/rsyslog.d}"
TARGET="$HOST_DIR/10-audit-agent.conf"

host() {
    # Run a command in the host's namespaces (the pod has hostPID, so PID 1 is the host's init).
    nsenter --target 1 --mount --uts --ipc --net --pid -- "$@"
}

case "$ACTION" in
    install)
        if [ ! -f "$SNIPPETS/$SNIPPET" ]; then
            echo "SNIPPET=$SNIPPET is not one of: $(ls "$SNIPPETS" | grep '\.conf$' | tr '\n' ' ')" >&2
            exit 1
        fi
        if cmp -s "$SNIPPETS/$SNIPPET" "$TARGET"; then
            echo "$TARGET is up to date ($SNIPPET); rsyslog left alone"
            exit 0
        fi
        if [ -f "$TARGET" ]; then cp -p "$TARGET" "$TARGET.previous"; fi
        cp "$SNIPPETS/$SNIPPET" "$TARGET.new"
        mv "$TARGET.new" "$TARGET"
        ;;
    uninstall)
        if [ ! -e "$TARGET" ]; then
            echo "$TARGET is not there; rsyslog left alone"
            exit 0
        fi
        mv "$TARGET" "$TARGET.previous"
        ;;
    *)
        echo "ACTION must be install or uninstall, got $ACTION" >&2
        exit 1
        ;;
esac

restore_previous() {
    rm -f "$TARGET"
    if [ -f "$TARGET.previous" ]; then mv "$TARGET.previous" "$TARGET"; fi
}

if ! host rsyslogd -N1; then
    echo "rsyslog rejects the configuration with $TARGET ($ACTION); putting back the previous state" >&2
    restore_previous
    exit 1
fi
if ! host systemctl restart rsyslog; then
    # Back to the previous state, so that the pod's next attempt (kubelet retries the init
    # container) finds the change still to be made and restarts rsyslog again.
    echo "restarting rsyslog failed ($ACTION); putting back the previous state" >&2
    restore_previous
    host systemctl restart rsyslog || true
    exit 1
fi
rm -f "$TARGET.previous"
echo "$ACTION of $SNIPPET done; rsyslog restarted"
