import java.nio.file.Path;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.ingest.common.IngestCommonPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * Starts one OpenSearch node inside this JVM, for tests. Every argument is a setting
 * "key=value" (path.home, http.port, ...). Runs until SIGTERM, which closes the node cleanly,
 * or, with -Dlauncher.exitOnStdinClose=true, until its standard input closes.
 */
public final class OpenSearchLauncher {

    /** Node's constructor taking classpath plugins is protected; the HTTP layer and the ingest
     * processors are such plugins (modules in a distribution). */
    static final class EmbeddedNode extends Node {
        EmbeddedNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
            super(environment, plugins, true);
        }
    }

    public static void main(String[] args) throws Exception {
        Settings.Builder builder = Settings.builder();
        for (String arg : args) {
            int eq = arg.indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("expected key=value, got " + arg);
            }
            builder.put(arg.substring(0, eq), arg.substring(eq + 1));
        }
        Settings settings = builder.build();
        Path config = Path.of(settings.get("path.home"), "config");
        Environment environment =
            InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), config, () -> "test-node");
        Node node = new EmbeddedNode(environment, List.of(Netty4Plugin.class, IngestCommonPlugin.class));
        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                closed.countDown();
            }
        }));
        if (Boolean.getBoolean("launcher.exitOnStdinClose")) {
            // The test process holds our stdin: if it dies without stopping us (kill -9, a
            // crashed runner), the pipe closes and the node goes too; no orphan JVM.
            Thread watcher = new Thread(() -> {
                try {
                    while (System.in.read() != -1) {
                        // ignore input
                    }
                } catch (Exception e) {
                    // closed
                }
                System.exit(0);
            }, "stdin-watcher");
            watcher.setDaemon(true);
            watcher.start();
        }
        node.start();
        System.out.println("OPENSEARCH STARTED");
        System.out.flush();
        closed.await();
    }
}
