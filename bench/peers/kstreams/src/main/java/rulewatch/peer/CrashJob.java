package rulewatch.peer;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.time.Duration;
import java.time.Instant;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.atomic.LongAdder;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * rulewatch's built-in crash rule as a Kafka Streams application: per user_id, 10-second
 * tumbling event-time windows with 10 s of grace (Spark's and rulewatch's 10 s watermark
 * delay), counting events whose content contains "crash" (any case) and whose severity is
 * High or Critical, reporting the windows that count more than 2 once each closes (append
 * mode: suppress until the window closes). The input is keyed by user_id, so nothing is
 * repartitioned (groupByKey). In update mode every change of a count above 2 is reported
 * instead (as the record cache and the commit interval let it out). Prints "events N" (records
 * read so far) every 100 ms for the benchmark.
 *
 * <p>Arguments: BOOTSTRAP INPUT OUTPUT APPLICATION_ID THREADS GUARANTEE STATE_DIR MODE, where
 * GUARANTEE is at_least_once or exactly_once_v2 and MODE append or update.
 */
public final class CrashJob {
  /** One log event; fields the rule does not use are ignored. */
  public static final class Event {
    public String timestamp;
    public String severity;
    public String user_id;
    public String content;
    /** Event time, milliseconds since the epoch; -1 if missing or unreadable. */
    long millis = -1;
  }

  private static final ObjectMapper JSON =
      new ObjectMapper().configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

  /** JSON to Event; null for a malformed line (dropped by the extractor's -1). */
  static Event decode(byte[] bytes) {
    try {
      Event e = JSON.readValue(bytes, Event.class);
      if (e != null && e.timestamp != null) {
        e.millis = Instant.parse(e.timestamp).toEpochMilli();
      }
      return e;
    } catch (Exception malformed) {
      return null;
    }
  }

  /** Event time from the decoded value; Kafka Streams skips records given -1. */
  public static final class EventTime implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
      return record.value() instanceof Event e ? e.millis : -1;
    }
  }

  static boolean selected(Event e) {
    return e != null
        && e.user_id != null
        && e.content != null
        && ("High".equals(e.severity) || "Critical".equals(e.severity))
        && e.content.toLowerCase(Locale.ROOT).contains("crash");
  }

  public static void main(String[] args) throws InterruptedException {
    if (args.length != 8) {
      System.err.println(
          "usage: CrashJob BOOTSTRAP INPUT OUTPUT APPLICATION_ID THREADS GUARANTEE STATE_DIR"
              + " MODE");
      System.exit(2);
    }
    Properties p = new Properties();
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, args[3]);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(args[4]));
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, args[5]);
    p.put(StreamsConfig.STATE_DIR_CONFIG, args[6]);
    p.put(StreamsConfig.DEFAULT_TIMESTAMP_EXTRACTOR_CLASS_CONFIG, EventTime.class);

    Serde<Event> events =
        Serdes.serdeFrom(
            (Serializer<Event>) (topic, e) -> {
              throw new UnsupportedOperationException("events are only read");
            },
            (Deserializer<Event>) (topic, bytes) -> decode(bytes));
    LongAdder read = new LongAdder();
    StreamsBuilder builder = new StreamsBuilder();
    KTable<Windowed<String>, Long> counts =
        builder.stream(args[1], Consumed.with(Serdes.String(), events))
            .peek((k, v) -> read.increment())
            .filter((k, e) -> selected(e))
            .groupByKey(Grouped.with(Serdes.String(), events))
            .windowedBy(
                TimeWindows.ofSizeAndGrace(Duration.ofSeconds(10), Duration.ofSeconds(10)))
            .count();
    if (args[7].equals("append")) {
      counts = counts.suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()));
    }
    counts
        .toStream()
        .filter((w, count) -> count > 2)
        .map(
            (w, count) ->
                new org.apache.kafka.streams.KeyValue<>(
                    w.key() + "@" + w.window().start(),
                    String.format(
                        "{\"window_start\":\"%s\",\"window_end\":\"%s\",\"user_id\":\"%s\",\"count\":%d}",
                        Instant.ofEpochMilli(w.window().start()),
                        Instant.ofEpochMilli(w.window().end()),
                        w.key(),
                        count)))
        .to(args[2], Produced.with(Serdes.String(), Serdes.String()));

    KafkaStreams streams = new KafkaStreams(builder.build(), p);
    Runtime.getRuntime().addShutdownHook(new Thread(streams::close));
    streams.start();
    while (true) {
      Thread.sleep(100);
      System.out.println("events " + read.sum());
    }
  }
}
