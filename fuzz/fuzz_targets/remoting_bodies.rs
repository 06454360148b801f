//! Every remoting body reader (exporter/src/source/remoting/protocol.rs, called from mod.rs on the
//! broker's and name server's answers). The first byte picks the reader, the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmq_exporter::source::remoting::protocol;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 7 {
        // GET_BROKER_CLUSTER_INFO
        0 => {
            if let Ok(brokers) = protocol::cluster_info(body) {
                assert!(brokers.windows(2).all(|w| w[0].name <= w[1].name));
                for b in &brokers {
                    if b.has_master() {
                        assert_eq!(b.read_addr(), b.addrs.get(&0).map(String::as_str));
                    }
                }
            }
        }
        // GET_ALL_SUBSCRIPTIONGROUP_CONFIG
        1 => {
            let _ = protocol::subscription_groups(body);
        }
        // GET_ALL_CONSUMER_OFFSET
        2 => {
            if let Ok(map) = protocol::topics_by_group(body) {
                assert!(map.values().all(|topics| !topics.is_empty()));
            }
        }
        // GET_CONSUME_STATS
        3 => {
            let _ = protocol::consume_stats(body);
        }
        // GET_CONSUMER_CONNECTION_LIST
        4 => {
            let _ = protocol::consumer_connections(body);
        }
        // QUERY_CONSUME_QUEUE
        5 => {
            let _ = protocol::consume_queue_physical_offset(body);
        }
        // VIEW_MESSAGE_BY_ID (binary)
        _ => {
            let _ = protocol::message_store_timestamp(body);
        }
    }
});
