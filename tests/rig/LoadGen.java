// LoadGen — test traffic generator for the RocketMQ test rig.
//
// Single-file program, run without a build step:
//   java -cp 'LIB/*' LoadGen.java SUBCOMMAND [options]
// where LIB is a lib dir from fetch.sh (4.9.x or 5.x jars). Only APIs present in both the
// 4.9.8 and 5.3.3 client/tools jars are referenced statically; classes whose package moved
// between 4.x and 5.x are used through `var`, reflection, or raw remoting requests.
//
// Subcommands (each ends with one machine-readable line "RESULT k=v ..." on stdout):
//   produce --namesrv A --topic T --count N [--queues Q] [--tag TAG] [--body-size B]
//   consume --namesrv A --group G --topic T --expect M [--timeout-s S] [--tag TAG] [--fail-first K]
//           (--fail-first: the first K deliveries return RECONSUME_LATER, so the broker sends them
//            to %RETRY%G and redelivers them ~10 s later; offsets get committed on %RETRY%G too)
//   hold    --namesrv A --group G --topic T --hold-s S [--timeout-s S]
//   pop     --namesrv A --group G --topic T --expect M [--timeout-s S]        (5.x only)
//   groups  --namesrv A --count G --prefix P --topic T [--lag L] [--threads K]
//   churn   --namesrv A --seconds D --every P --groups K --keep N --truth FILE [--prefix SOAK]
//           (every P s: a new topic PREFIX_T<n> with 4 queues per master and 5 messages per
//            queue, K groups PREFIX_G<n>_<i> committed lag L = 1 + n % 5 behind on every queue,
//            and the generation n - N deleted on every master ever seen (groups with their
//            offsets, then the topic; a master that is down fails the step: retried next tick);
//            every completed step is appended to FILE as one JSON line with its epoch ms;
//            a step that fails (a broker restarting) is logged and retried on the next tick)
// Common options: --ak ACCESS_KEY --sk SECRET_KEY (ACL; RPC hook AclClientRPCHook).
// Exit code: 0 ok, 1 failure/timeout, 2 usage error.

import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.rocketmq.acl.common.AclClientRPCHook;
import org.apache.rocketmq.acl.common.SessionCredentials;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.consumer.rebalance.AllocateMessageQueueAveragely;
import org.apache.rocketmq.client.consumer.store.ReadOffsetType;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.TopicConfig;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;
import org.apache.rocketmq.remoting.RPCHook;
import org.apache.rocketmq.remoting.netty.NettyClientConfig;
import org.apache.rocketmq.remoting.netty.NettyRemotingClient;
import org.apache.rocketmq.remoting.protocol.RemotingCommand;
import org.apache.rocketmq.tools.admin.DefaultMQAdminExt;

@SuppressWarnings("deprecation")
public class LoadGen {
    // remoting request codes (same numbers in 4.9.x and 5.x)
    static final int UPDATE_CONSUMER_OFFSET = 15;
    static final int UPDATE_AND_CREATE_SUBSCRIPTIONGROUP = 200;
    static final int UPDATE_AND_CREATE_SUBSCRIPTIONGROUP_LIST = 225; // 5.x only
    static final int DELETE_SUBSCRIPTIONGROUP = 207;

    static Map<String, String> opts = new HashMap<>();
    static RPCHook hook;
    static String namesrv;

    public static void main(String[] args) {
        quietLogging();
        if (args.length < 1) usage("missing subcommand");
        String cmd = args[0];
        for (int i = 1; i < args.length; i++) {
            String a = args[i];
            if (!a.startsWith("--")) usage("unexpected argument " + a);
            if (i + 1 >= args.length) usage("missing value for " + a);
            opts.put(a.substring(2), args[++i]);
        }
        namesrv = req("namesrv");
        if (opts.containsKey("ak")) {
            hook = new AclClientRPCHook(new SessionCredentials(req("ak"), req("sk")));
        }
        int rc;
        try {
            switch (cmd) {
                case "produce": rc = produce(); break;
                case "consume": rc = consume(); break;
                case "hold": rc = hold(); break;
                case "pop": rc = pop(); break;
                case "groups": rc = groups(); break;
                case "churn": rc = churn(); break;
                default: usage("unknown subcommand " + cmd); rc = 2;
            }
        } catch (Throwable t) {
            System.err.println("LoadGen " + cmd + " failed: " + t);
            t.printStackTrace();
            System.out.println("RESULT error=" + t.getClass().getSimpleName());
            rc = 1;
        }
        System.out.flush();
        System.exit(rc);
    }

    // ------------------------------------------------------------------ options / helpers

    static void usage(String msg) {
        System.err.println("LoadGen: " + msg);
        System.err.println("usage: LoadGen produce|consume|hold|pop|groups --namesrv HOST:PORT ... (see header of LoadGen.java)");
        System.exit(2);
    }

    static String req(String k) {
        String v = opts.get(k);
        if (v == null || v.isEmpty()) usage("--" + k + " is required");
        return v;
    }

    static String opt(String k, String d) { return opts.getOrDefault(k, d); }

    static int intOpt(String k, int d) { return opts.containsKey(k) ? Integer.parseInt(opts.get(k)) : d; }

    static void log(String s) { System.err.println("[LoadGen] " + s); }

    /** keep client/tool logs out of $HOME and silence logback status output (5.x shaded logback). */
    static void quietLogging() {
        if (System.getProperty("rocketmq.client.logRoot") == null) {
            System.setProperty("rocketmq.client.logRoot",
                System.getProperty("java.io.tmpdir") + "/rmq-rig-client-logs");
        }
        if (System.getProperty("rocketmq.client.logLevel") == null) {
            System.setProperty("rocketmq.client.logLevel", "WARN");
        }
        // 4.x: tools/remoting log through slf4j -> (unshaded) logback whose default config logs
        // DEBUG to stdout; point it at a minimal WARN-to-stderr config.
        if (System.getProperty("logback.configurationFile") == null
            && LoadGen.class.getClassLoader().getResource("ch/qos/logback/classic/LoggerContext.class") != null) {
            try {
                java.nio.file.Path f = java.nio.file.Files.createTempFile("loadgen-logback", ".xml");
                f.toFile().deleteOnExit();
                java.nio.file.Files.write(f, ("<configuration><appender name=\"E\" class=\"ch.qos.logback.core.ConsoleAppender\">"
                    + "<target>System.err</target><encoder><pattern>%d %p %c - %m%n</pattern></encoder></appender>"
                    + "<root level=\"WARN\"><appender-ref ref=\"E\"/></root></configuration>").getBytes(StandardCharsets.UTF_8));
                System.setProperty("logback.configurationFile", f.toString());
            } catch (java.io.IOException ignored) {
                // keep default logging
            }
        }
        // 5.x: the broker jar's rmq.broker.logback.xml would be picked for this JVM too
        if (System.getProperty("rmq.logback.configurationFile") == null
            && LoadGen.class.getClassLoader().getResource("rmq.client.logback.xml") != null) {
            System.setProperty("rmq.logback.configurationFile", "rmq.client.logback.xml");
        }
        if (System.getProperty("logback.statusListenerClass") == null) {
            String nop = "org.apache.rocketmq.logging.ch.qos.logback.core.status.NopStatusListener";
            if (LoadGen.class.getClassLoader().getResource(nop.replace('.', '/') + ".class") != null) {
                System.setProperty("logback.statusListenerClass", nop);
            }
        }
    }

    static DefaultMQAdminExt newAdmin() throws Exception {
        DefaultMQAdminExt admin = hook == null ? new DefaultMQAdminExt(10000) : new DefaultMQAdminExt(hook, 10000);
        admin.setNamesrvAddr(namesrv);
        admin.setInstanceName("loadgen-admin-" + ProcessHandle.current().pid());
        admin.start();
        return admin;
    }

    /** brokerName -> master address, for every broker of every cluster known to the name server */
    static TreeMap<String, String> masters(DefaultMQAdminExt admin) throws Exception {
        TreeMap<String, String> out = new TreeMap<>();
        var ci = admin.examineBrokerClusterInfo();
        for (var e : ci.getBrokerAddrTable().entrySet()) {
            String addr = e.getValue().getBrokerAddrs().get(0L);
            if (addr != null) out.put(e.getKey(), addr);
        }
        return out;
    }

    static List<MessageQueue> sorted(List<MessageQueue> mqs) {
        List<MessageQueue> l = new ArrayList<>(mqs);
        l.sort(Comparator.comparing(MessageQueue::getBrokerName).thenComparingInt(MessageQueue::getQueueId));
        return l;
    }

    /** queue -> (brokerOffset, consumerOffset) as reported by the brokers for group/topic */
    static Map<MessageQueue, long[]> consumeStats(DefaultMQAdminExt admin, String group, String topic) {
        Map<MessageQueue, long[]> out = new HashMap<>();
        try {
            var cs = admin.examineConsumeStats(group, topic);
            for (var e : cs.getOffsetTable().entrySet()) {
                if (!e.getKey().getTopic().equals(topic)) continue;
                out.put(e.getKey(), new long[] {e.getValue().getBrokerOffset(), e.getValue().getConsumerOffset()});
            }
        } catch (Exception e) {
            // group not online yet / no offsets yet
        }
        return out;
    }

    // ------------------------------------------------------------------ produce

    static int produce() throws Exception {
        String topic = req("topic");
        int count = Integer.parseInt(req("count"));
        String tag = opt("tag", null);
        int bodySize = intOpt("body-size", 64);
        DefaultMQAdminExt admin = newAdmin();
        int expectedQueues;
        try {
            TreeMap<String, String> m = masters(admin);
            if (m.isEmpty()) throw new IllegalStateException("no broker registered in name server " + namesrv);
            boolean exists = false;
            int existingQueues = 0;
            try {
                var route = admin.examineTopicRouteInfo(topic);
                for (var qd : route.getQueueDatas()) {
                    exists = true;
                    existingQueues += qd.getWriteQueueNums();
                }
            } catch (Exception e) {
                exists = false;
            }
            if (!exists || opts.containsKey("queues")) {
                int q = intOpt("queues", 4);
                for (var e : m.entrySet()) {
                    TopicConfig tc = new TopicConfig(topic);
                    tc.setReadQueueNums(q);
                    tc.setWriteQueueNums(q);
                    tc.setPerm(6);
                    admin.createAndUpdateTopicConfig(e.getValue(), tc);
                }
                expectedQueues = q * m.size();
                log("topic " + topic + ": " + q + " queues on " + m.keySet());
            } else {
                expectedQueues = existingQueues;
            }
        } finally {
            admin.shutdown();
        }

        DefaultMQProducer producer = new DefaultMQProducer("loadgen-producer", hook);
        producer.setNamesrvAddr(namesrv);
        producer.setInstanceName("loadgen-producer-" + ProcessHandle.current().pid());
        producer.setSendMsgTimeout(10000);
        producer.start();
        int sent = 0;
        try {
            // wait until the name server route shows all queues
            long deadline = System.currentTimeMillis() + 30000;
            List<MessageQueue> mqs;
            while (true) {
                try {
                    mqs = producer.fetchPublishMessageQueues(topic);
                } catch (Exception e) {
                    mqs = new ArrayList<>();
                }
                if (mqs.size() >= expectedQueues) break;
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("route of " + topic + " has " + mqs.size() + " queues, expected " + expectedQueues);
                }
                Thread.sleep(200);
            }
            byte[] body = new byte[Math.max(0, bodySize)];
            Arrays.fill(body, (byte) 'x');
            for (int i = 0; i < count; i++) {
                Message msg = new Message(topic, body);
                if (tag != null) msg.setTags(tag);
                msg.setKeys("rig-" + i);
                SendResult r = producer.send(msg, (list, m, arg) -> {
                    List<MessageQueue> s = sorted(list);
                    return s.get((Integer) arg % s.size());
                }, i);
                if (r.getSendStatus() != SendStatus.SEND_OK) {
                    log("message " + i + ": " + r.getSendStatus());
                    System.out.println("RESULT sent=" + sent + " status=" + r.getSendStatus());
                    return 1;
                }
                sent++;
            }
        } finally {
            producer.shutdown();
        }
        System.out.println("RESULT sent=" + sent);
        return 0;
    }

    // ------------------------------------------------------------------ consume

    static DefaultMQPushConsumer newConsumer(String group, String topic, String tag) throws Exception {
        DefaultMQPushConsumer c = new DefaultMQPushConsumer(group, hook, new AllocateMessageQueueAveragely());
        c.setNamesrvAddr(namesrv);
        c.setInstanceName("loadgen-" + group + "-" + ProcessHandle.current().pid());
        c.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        c.setPersistConsumerOffsetInterval(1000);
        c.subscribe(topic, tag == null ? "*" : tag);
        return c;
    }

    static String msgKey(MessageExt m) {
        return m.getTopic() + "/" + m.getBrokerName() + "/" + m.getQueueId() + "/" + m.getQueueOffset();
    }

    static int consume() throws Exception {
        String group = req("group");
        String topic = req("topic");
        int expect = Integer.parseInt(req("expect"));
        long timeoutMs = intOpt("timeout-s", 60) * 1000L;
        long deadline = System.currentTimeMillis() + timeoutMs;
        Set<String> seen = ConcurrentHashMap.newKeySet();
        AtomicLong lastMsgAt = new AtomicLong(System.currentTimeMillis());
        int failFirst = intOpt("fail-first", 0);
        AtomicInteger failed = new AtomicInteger();
        String retryTopic = "%RETRY%" + group;
        DefaultMQPushConsumer c = newConsumer(group, topic, opt("tag", null));
        c.setConsumeMessageBatchMaxSize(1);
        c.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            lastMsgAt.set(System.currentTimeMillis());
            for (MessageExt m : msgs) {
                if (m.getReconsumeTimes() == 0 && failed.getAndIncrement() < failFirst) {
                    return ConsumeConcurrentlyStatus.RECONSUME_LATER;
                }
            }
            for (MessageExt m : msgs) {
                // The client-side unique id survives a trip through %RETRY%, where queue and
                // offset change (and may collide with another message's).
                if (m.getTopic().equals(topic)) seen.add(m.getMsgId());
            }
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        c.start();
        DefaultMQAdminExt admin = newAdmin();
        try {
            while (seen.size() < expect) {
                if (System.currentTimeMillis() > deadline) {
                    log("timeout: consumed " + seen.size() + " of " + expect);
                    System.out.println("RESULT consumed=" + seen.size() + " status=TIMEOUT");
                    c.shutdown();
                    return 1;
                }
                Thread.sleep(100);
            }
            // let in-flight deliveries finish (quiet for 1 s)
            while (System.currentTimeMillis() - lastMsgAt.get() < 1000 && System.currentTimeMillis() < deadline) {
                Thread.sleep(100);
            }
            // make sure the committed offsets reached the broker
            var impl = c.getDefaultMQPushConsumerImpl();
            Map<MessageQueue, Long> local = new HashMap<>();
            for (MessageQueue mq : impl.getRebalanceImpl().getProcessQueueTable().keySet()) {
                if (!mq.getTopic().equals(topic) && !(failFirst > 0 && mq.getTopic().equals(retryTopic))) continue;
                long off = impl.getOffsetStore().readOffset(mq, ReadOffsetType.READ_FROM_MEMORY);
                if (off >= 0) local.put(mq, off);
            }
            boolean persisted = false;
            while (System.currentTimeMillis() < deadline) {
                impl.persistConsumerOffset();
                Thread.sleep(300);
                Map<MessageQueue, long[]> st = consumeStats(admin, group, topic);
                if (failFirst > 0) st.putAll(consumeStats(admin, group, retryTopic));
                boolean ok = !st.isEmpty();
                for (var e : local.entrySet()) {
                    long[] bo = st.get(e.getKey());
                    if (bo == null || bo[1] < e.getValue()) { ok = false; break; }
                }
                if (ok) { persisted = true; break; }
            }
            if (!persisted) {
                log("timeout waiting for committed offsets on the broker: " + local);
                System.out.println("RESULT consumed=" + seen.size() + " status=OFFSETS_NOT_PERSISTED");
                c.shutdown();
                return 1;
            }
        } finally {
            admin.shutdown();
        }
        c.shutdown();
        System.out.println("RESULT consumed=" + seen.size());
        return 0;
    }

    // ------------------------------------------------------------------ hold

    static int hold() throws Exception {
        String group = req("group");
        String topic = req("topic");
        long holdMs = (long) (Double.parseDouble(req("hold-s")) * 1000);
        long timeoutMs = intOpt("timeout-s", 60) * 1000L;
        AtomicInteger received = new AtomicInteger();
        CountDownLatch first = new CountDownLatch(1);
        DefaultMQPushConsumer c = newConsumer(group, topic, opt("tag", null));
        c.setConsumeMessageBatchMaxSize(1);
        c.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            received.addAndGet(msgs.size());
            first.countDown();
            try {
                Thread.sleep(Long.MAX_VALUE);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return ConsumeConcurrentlyStatus.RECONSUME_LATER;
        });
        c.start();
        if (!first.await(timeoutMs, TimeUnit.MILLISECONDS)) {
            log("no message delivered within timeout");
            System.out.println("RESULT held=0 status=TIMEOUT");
            System.out.flush();
            Runtime.getRuntime().halt(1);
        }
        Thread.sleep(1000); // let the other consume threads pick up their message
        var impl = c.getDefaultMQPushConsumerImpl();
        long cached = 0;
        // A group without any committed offset is invisible to GET_CONSUME_STATS/consumerProgress
        // (the broker lists only topics with committed offsets). Commit "nothing consumed" =
        // the offset of the first cached message of each queue that has no committed offset yet.
        for (var e : impl.getRebalanceImpl().getProcessQueueTable().entrySet()) {
            var pq = e.getValue();
            cached += pq.getMsgCount().get();
            MessageQueue mq = e.getKey();
            if (!mq.getTopic().equals(topic)) continue;
            long committed = impl.getOffsetStore().readOffset(mq, ReadOffsetType.MEMORY_FIRST_THEN_STORE);
            Long firstOff = null;
            try {
                firstOff = pq.getMsgTreeMap().isEmpty() ? null : pq.getMsgTreeMap().firstKey();
            } catch (Exception ignored) {
                // concurrent modification; skip this queue
            }
            if (committed < 0 && firstOff != null) {
                impl.getOffsetStore().updateOffset(mq, firstOff, false);
            }
        }
        impl.persistConsumerOffset();
        System.out.println("HOLDING n=" + received.get() + " cached=" + cached);
        System.out.flush();
        Thread.sleep(holdMs);
        System.out.println("RESULT held=" + received.get());
        System.out.flush();
        // halt: no shutdown hooks, no offset persistence of the held messages
        Runtime.getRuntime().halt(0);
        return 0;
    }

    // ------------------------------------------------------------------ pop (5.x)

    @SuppressWarnings({"unchecked", "rawtypes"})
    static int pop() throws Exception {
        String group = req("group");
        String topic = req("topic");
        int expect = Integer.parseInt(req("expect"));
        long timeoutMs = intOpt("timeout-s", 60) * 1000L;
        long deadline = System.currentTimeMillis() + timeoutMs;
        Class<?> modeCls;
        Method setClientRebalance;
        try {
            modeCls = Class.forName("org.apache.rocketmq.common.message.MessageRequestMode");
            setClientRebalance = DefaultMQPushConsumer.class.getMethod("setClientRebalance", boolean.class);
        } catch (ClassNotFoundException | NoSuchMethodException e) {
            log("POP consumption needs RocketMQ 5.x client jars (" + e + ")");
            System.out.println("RESULT consumed=0 status=UNSUPPORTED");
            return 1;
        }
        Object popMode = Enum.valueOf((Class<Enum>) modeCls, "POP");
        DefaultMQAdminExt admin = newAdmin();
        try {
            Method setMode = DefaultMQAdminExt.class.getMethod("setMessageRequestMode",
                String.class, String.class, String.class, modeCls, int.class, long.class);
            for (String addr : masters(admin).values()) {
                setMode.invoke(admin, addr, topic, group, popMode, 0, 5000L);
                log("set message request mode POP for " + group + "/" + topic + " on " + addr);
            }
            Set<String> seen = ConcurrentHashMap.newKeySet();
            DefaultMQPushConsumer c = newConsumer(group, topic, opt("tag", null));
            setClientRebalance.invoke(c, false);
            c.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
                for (MessageExt m : msgs) {
                    if (m.getTopic().equals(topic)) seen.add(msgKey(m));
                }
                return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
            });
            c.start();
            try {
                while (seen.size() < expect) {
                    if (System.currentTimeMillis() > deadline) {
                        log("timeout: consumed " + seen.size() + " of " + expect);
                        System.out.println("RESULT consumed=" + seen.size() + " status=TIMEOUT");
                        return 1;
                    }
                    Thread.sleep(100);
                }
                // wait until the broker reports the acked messages as consumed
                boolean done = false;
                Map<MessageQueue, long[]> st = null;
                while (System.currentTimeMillis() < deadline) {
                    st = consumeStats(admin, group, topic);
                    long diff = 0;
                    for (long[] v : st.values()) diff += v[0] - v[1];
                    if (!st.isEmpty() && diff == 0) { done = true; break; }
                    Thread.sleep(300);
                }
                if (!done) {
                    StringBuilder sb = new StringBuilder();
                    if (st != null) st.forEach((k, v) -> sb.append(k.getBrokerName()).append('/').append(k.getQueueId())
                        .append(" broker=").append(v[0]).append(" consumer=").append(v[1]).append("; "));
                    log("broker did not report all messages consumed: " + sb);
                    System.out.println("RESULT consumed=" + seen.size() + " status=NOT_COMMITTED");
                    return 1;
                }
                System.out.println("RESULT consumed=" + seen.size());
                return 0;
            } finally {
                c.shutdown();
            }
        } finally {
            admin.shutdown();
        }
    }

    // ------------------------------------------------------------------ groups

    static int groups() throws Exception {
        int count = Integer.parseInt(req("count"));
        String prefix = req("prefix");
        String topic = req("topic");
        long lag = intOpt("lag", 0);
        DefaultMQAdminExt admin = newAdmin();
        NettyRemotingClient rc = new NettyRemotingClient(new NettyClientConfig());
        if (hook != null) rc.registerRPCHook(hook);
        rc.start();
        try {
            List<String> names = new ArrayList<>(count);
            for (int i = 0; i < count; i++) names.add(prefix + i);
            makeGroups(admin, rc, names, topic, lag, List.of());
        } finally {
            rc.shutdown();
            admin.shutdown();
        }
        System.out.println("RESULT groups=" + count);
        return 0;
    }

    /** subscription groups `names` on every master, each committed `lag` behind on every queue of `topic` */
    static void makeGroups(DefaultMQAdminExt admin, NettyRemotingClient rc, List<String> names, String topic, long lag, java.util.Collection<String> expect) throws Exception {
        int count = names.size();
        int threads = intOpt("threads", 8);
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        long t0 = System.currentTimeMillis();
        try {
            // topic queues and their max offsets
            Map<String, String> brokerAddr = new TreeMap<>();
            Map<String, Integer> brokerQueues = new TreeMap<>();
            var route = admin.examineTopicRouteInfo(topic);
            for (var bd : route.getBrokerDatas()) {
                String a = bd.getBrokerAddrs().get(0L);
                if (a != null) brokerAddr.put(bd.getBrokerName(), a);
            }
            for (var qd : route.getQueueDatas()) brokerQueues.put(qd.getBrokerName(), qd.getReadQueueNums());
            // The churn sent messages to every master; a route read while one of them was leaving
            // (or not yet back) would commit offsets on the others only, and the truth would count
            // queues that have no committed offset. Fail instead: the churn retries the generation.
            for (String b : expect) {
                if (!brokerAddr.containsKey(b) || !brokerQueues.containsKey(b))
                    throw new IllegalStateException("route of " + topic + " lacks " + b + " (it has " + brokerAddr.keySet() + ")");
            }
            Map<MessageQueue, Long> commit = new HashMap<>();
            for (var e : brokerQueues.entrySet()) {
                if (!brokerAddr.containsKey(e.getKey())) continue;
                for (int q = 0; q < e.getValue(); q++) {
                    MessageQueue mq = new MessageQueue(topic, e.getKey(), q);
                    commit.put(mq, Math.max(0, admin.maxOffset(mq) - lag));
                }
            }

            // 1. subscription groups on every master
            for (String addr : brokerAddr.values()) {
                boolean batchOk = true;
                for (int from = 0; from < count && batchOk; from += 1000) {
                    List<String> chunk = names.subList(from, Math.min(count, from + 1000));
                    StringBuilder sb = new StringBuilder("{\"groupConfigList\":[");
                    for (int i = 0; i < chunk.size(); i++) {
                        if (i > 0) sb.append(',');
                        sb.append(groupJson(chunk.get(i)));
                    }
                    sb.append("]}");
                    RemotingCommand r = RemotingCommand.createRequestCommand(UPDATE_AND_CREATE_SUBSCRIPTIONGROUP_LIST, null);
                    r.setBody(sb.toString().getBytes(StandardCharsets.UTF_8));
                    RemotingCommand resp = rc.invokeSync(addr, r, 30000);
                    if (resp == null || resp.getCode() != 0) {
                        if (from > 0) throw new IllegalStateException("batch group creation failed on " + addr + ": " + (resp == null ? "null" : resp.getCode() + " " + resp.getRemark()));
                        batchOk = false; // 4.x: no batch request; fall back to one request per group
                    }
                }
                if (!batchOk) {
                    log("broker " + addr + " has no batch group creation; creating groups one by one");
                    List<Future<?>> fs = new ArrayList<>();
                    for (String g : names) {
                        fs.add(pool.submit(() -> {
                            RemotingCommand r = RemotingCommand.createRequestCommand(UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, null);
                            r.setBody(groupJson(g).getBytes(StandardCharsets.UTF_8));
                            RemotingCommand resp = rc.invokeSync(addr, r, 30000);
                            if (resp == null || resp.getCode() != 0) throw new IllegalStateException("create group " + g + " on " + addr + ": " + (resp == null ? "null" : resp.getCode() + " " + resp.getRemark()));
                            return null;
                        }));
                    }
                    for (Future<?> f : fs) f.get();
                }
            }
            log("created " + count + " groups on " + brokerAddr.keySet() + " in " + (System.currentTimeMillis() - t0) + " ms");

            // 2. committed offsets (UPDATE_CONSUMER_OFFSET per group and queue)
            long t1 = System.currentTimeMillis();
            List<Future<?>> fs = new ArrayList<>();
            int per = Math.max(1, count / (threads * 4));
            for (int from = 0; from < count; from += per) {
                List<String> chunk = names.subList(from, Math.min(count, from + per));
                fs.add(pool.submit(() -> {
                    for (String g : chunk) {
                        for (var e : commit.entrySet()) {
                            MessageQueue mq = e.getKey();
                            RemotingCommand r = RemotingCommand.createRequestCommand(UPDATE_CONSUMER_OFFSET, null);
                            r.addExtField("consumerGroup", g);
                            r.addExtField("topic", topic);
                            r.addExtField("queueId", String.valueOf(mq.getQueueId()));
                            r.addExtField("commitOffset", String.valueOf(e.getValue()));
                            r.addExtField("bname", mq.getBrokerName());
                            RemotingCommand resp = rc.invokeSync(brokerAddr.get(mq.getBrokerName()), r, 30000);
                            if (resp == null || resp.getCode() != 0) throw new IllegalStateException("update offset " + g + " " + mq + ": " + (resp == null ? "null" : resp.getCode() + " " + resp.getRemark()));
                        }
                    }
                    return null;
                }));
            }
            for (Future<?> f : fs) f.get();
            log("committed offsets for " + count + " groups x " + commit.size() + " queues in " + (System.currentTimeMillis() - t1) + " ms");
        } finally {
            pool.shutdownNow();
        }
    }

    static int churn() throws Exception {
        long seconds = intOpt("seconds", 3600);
        long every = intOpt("every", 15) * 1000L;
        int k = intOpt("groups", 20);
        int keep = intOpt("keep", 8);
        String prefix = opt("prefix", "SOAK");
        java.nio.file.Path truth = java.nio.file.Paths.get(req("truth"));
        DefaultMQAdminExt admin = newAdmin();
        NettyRemotingClient rc = new NettyRemotingClient(new NettyClientConfig());
        if (hook != null) rc.registerRPCHook(hook);
        rc.start();
        DefaultMQProducer producer = new DefaultMQProducer("loadgen-churn", hook);
        producer.setNamesrvAddr(namesrv);
        producer.setInstanceName("loadgen-churn-" + ProcessHandle.current().pid());
        producer.setSendMsgTimeout(5000);
        producer.setRetryTimesWhenSendFailed(0);
        producer.start();
        long end = System.currentTimeMillis() + seconds * 1000;
        int next = 0, created = 0, deleted = 0, failures = 0;
        java.util.ArrayDeque<Integer> live = new java.util.ArrayDeque<>();
        // every master ever seen: a generation is deleted on all of them (a broker that is down
        // fails the deletion, retried on the next tick), never only on the ones up right now
        TreeMap<String, String> known = new TreeMap<>();
        try {
            for (long tick = System.currentTimeMillis(); tick < end; tick += every) {
                long wait = tick - System.currentTimeMillis();
                if (wait > 0) Thread.sleep(wait);
                try {
                    known.putAll(masters(admin));
                    while (live.size() >= keep) {
                        int n = live.peekFirst();
                        String topic = prefix + "_T" + n;
                        // From here until "delete" the generation may be gone from some brokers
                        // and not others (a deletion that fails half way is retried next tick).
                        appendTruth(truth, "{\"t\":" + System.currentTimeMillis() + ",\"op\":\"deleting\",\"gen\":" + n + "}");
                        for (String addr : known.values()) {
                            for (int i = 0; i < k; i++) {
                                RemotingCommand r = RemotingCommand.createRequestCommand(DELETE_SUBSCRIPTIONGROUP, null);
                                r.addExtField("groupName", prefix + "_G" + n + "_" + i);
                                r.addExtField("cleanOffset", "true");
                                r.addExtField("removeOffset", "true");
                                RemotingCommand resp = rc.invokeSync(addr, r, 5000);
                                if (resp == null || resp.getCode() != 0) throw new IllegalStateException("delete group on " + addr + ": " + (resp == null ? "null" : resp.getCode() + " " + resp.getRemark()));
                            }
                        }
                        admin.deleteTopicInBroker(new java.util.HashSet<>(known.values()), topic);
                        var ns = new java.util.HashSet<>(admin.getNameServerAddressList());
                        // (addrs, cluster, topic) is the form both 4.9 and 5.x clients have; a null
                        // cluster removes the topic from the name servers' routes altogether
                        admin.deleteTopicInNameServer(ns, null, topic);
                        live.removeFirst();
                        deleted++;
                        appendTruth(truth, "{\"t\":" + System.currentTimeMillis() + ",\"op\":\"delete\",\"gen\":" + n + ",\"topic\":\"" + topic + "\"}");
                    }
                } catch (Exception e) {
                    failures++;
                    log("churn deletion failed (retried next tick): " + e);
                    appendTruth(truth, "{\"t\":" + System.currentTimeMillis() + ",\"op\":\"error\",\"error\":\"delete: " + String.valueOf(e.getMessage()).replace("\"", "'").replace("\\", "/") + "\"}");
                }
                try {
                    TreeMap<String, String> m = masters(admin);
                    int n = next;
                    String topic = prefix + "_T" + n;
                    int queues = 4;
                    for (String addr : m.values()) {
                        TopicConfig tc = new TopicConfig(topic);
                        tc.setReadQueueNums(queues);
                        tc.setWriteQueueNums(queues);
                        tc.setPerm(6);
                        admin.createAndUpdateTopicConfig(addr, tc);
                    }
                    int perQueue = 5;
                    for (String b : m.keySet()) {
                        for (int q = 0; q < queues; q++) {
                            MessageQueue mq = new MessageQueue(topic, b, q);
                            for (int i = 0; i < perQueue; i++) {
                                SendResult r = sendRetrying(producer, new Message(topic, ("soak " + n + " " + i).getBytes(StandardCharsets.UTF_8)), mq);
                                if (r.getSendStatus() != SendStatus.SEND_OK) throw new IllegalStateException("send " + mq + ": " + r.getSendStatus());
                            }
                        }
                    }
                    long lag = 1 + n % 5;
                    List<String> names = new ArrayList<>();
                    for (int i = 0; i < k; i++) names.add(prefix + "_G" + n + "_" + i);
                    makeGroups(admin, rc, names, topic, lag, m.keySet());
                    next++;
                    live.addLast(n);
                    created++;
                    StringBuilder g = new StringBuilder();
                    for (String name : names) g.append(g.length() == 0 ? "" : ",").append('"').append(name).append('"');
                    appendTruth(truth, "{\"t\":" + System.currentTimeMillis() + ",\"op\":\"create\",\"gen\":" + n + ",\"topic\":\"" + topic
                        + "\",\"lag\":" + (lag * queues * m.size()) + ",\"groups\":[" + g + "]}");
                } catch (Exception e) {
                    failures++;
                    log("churn creation failed (retried next tick): " + e);
                    appendTruth(truth, "{\"t\":" + System.currentTimeMillis() + ",\"op\":\"error\",\"error\":\"create: " + String.valueOf(e.getMessage()).replace("\"", "'").replace("\\", "/") + "\"}");
                }
            }
        } finally {
            producer.shutdown();
            rc.shutdown();
            admin.shutdown();
        }
        System.out.println("RESULT created=" + created + " deleted=" + deleted + " failures=" + failures);
        return 0;
    }

    /** the route of a topic just created reaches the name server a moment later */
    static SendResult sendRetrying(DefaultMQProducer producer, Message msg, MessageQueue mq) throws Exception {
        for (int attempt = 0; ; attempt++) {
            try {
                return producer.send(msg, mq);
            } catch (Exception e) {
                if (attempt >= 20) throw e;
                Thread.sleep(250);
            }
        }
    }

    static void appendTruth(java.nio.file.Path f, String line) throws java.io.IOException {
        java.nio.file.Files.write(f, (line + "\n").getBytes(StandardCharsets.UTF_8),
            java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
    }

    static String groupJson(String g) {
        return "{\"groupName\":\"" + g + "\",\"consumeEnable\":true,\"consumeFromMinEnable\":true,"
            + "\"consumeBroadcastEnable\":true,\"retryQueueNums\":1,\"retryMaxTimes\":16,\"brokerId\":0,"
            + "\"whichBrokerWhenConsumeSlowly\":1,\"notifyConsumerIdsChangedEnable\":true}";
    }
}
