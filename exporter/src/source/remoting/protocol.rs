//! RocketMQ remoting protocol facts used by the exporter, and typed readers for the bodies.
//!
//! Request and response codes are from apache/rocketmq `RequestCode.java` / `ResponseCode.java`
//! (identical numbers in 4.9.8 and 5.x). Body shapes are those written by the Java broker's fastjson
//! (`remoting/.../protocol/body/*.java`, `admin/ConsumeStats.java`, `admin/OffsetWrapper.java`).
//! Every reader tolerates missing fields, because older brokers omit what they do not have.

use std::collections::BTreeMap;

use super::fastjson::{self, Value};

pub mod code {
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    pub const GET_ALL_SUBSCRIPTIONGROUP_CONFIG: i32 = 201;
    pub const GET_CONSUMER_CONNECTION_LIST: i32 = 203;
    pub const GET_CONSUME_STATS: i32 = 208;
    pub const GET_ALL_CONSUMER_OFFSET: i32 = 43;
    pub const QUERY_CONSUME_QUEUE: i32 = 321;
    pub const VIEW_MESSAGE_BY_ID: i32 = 33;
}

pub mod response {
    pub const SUCCESS: i32 = 0;
    pub const SYSTEM_ERROR: i32 = 1;
    pub const NO_PERMISSION: i32 = 16;
    pub const CONSUMER_NOT_ONLINE: i32 = 206;
    pub const USER_NOT_EXIST: i32 = 3001;
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Json(#[from] fastjson::ParseError),
    #[error("{what}: missing or malformed field {field}")]
    Field {
        what: &'static str,
        field: &'static str,
    },
}

fn parse(body: &[u8]) -> Result<Value, BodyError> {
    Ok(fastjson::parse(body)?)
}

/// A broker set (master and slaves sharing one brokerName).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerData {
    pub cluster: String,
    pub name: String,
    /// brokerId → address; id 0 is the master.
    pub addrs: BTreeMap<i64, String>,
}

impl BrokerData {
    /// The master's address, or, when the master is gone, the slave with the lowest id.
    pub fn read_addr(&self) -> Option<&str> {
        self.addrs.values().next().map(String::as_str)
    }
    pub fn has_master(&self) -> bool {
        self.addrs.contains_key(&0)
    }
}

/// GET_BROKER_CLUSTER_INFO (106) body: `ClusterInfo`.
pub fn cluster_info(body: &[u8]) -> Result<Vec<BrokerData>, BodyError> {
    let v = parse(body)?;
    let table = v.get("brokerAddrTable");
    if !matches!(table, Value::Object(_)) {
        return Err(BodyError::Field {
            what: "ClusterInfo",
            field: "brokerAddrTable",
        });
    }
    let mut out = Vec::new();
    for (key, data) in table.entries() {
        let name = data
            .get("brokerName")
            .as_str()
            .or_else(|| key.key_text())
            .unwrap_or_default()
            .to_string();
        let cluster = data.get("cluster").as_str().unwrap_or_default().to_string();
        let addrs = data
            .get("brokerAddrs")
            .entries()
            .iter()
            .filter_map(|(id, addr)| {
                // Broker ids are 0 (master) or positive (slaves); a negative one would sort before
                // the master and be read instead of it.
                let id = id.key_text()?.parse::<i64>().ok().filter(|id| *id >= 0)?;
                Some((id, addr.as_str()?.to_string()))
            })
            .collect();
        out.push(BrokerData {
            cluster,
            name,
            addrs,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201) body: `SubscriptionGroupWrapper`; the group names
/// (keys of `subscriptionGroupTable`). The configs themselves are skipped unparsed.
pub fn subscription_groups(body: &[u8]) -> Result<Vec<String>, BodyError> {
    fastjson::object_keys(body, "subscriptionGroupTable")?.ok_or(BodyError::Field {
        what: "SubscriptionGroupWrapper",
        field: "subscriptionGroupTable",
    })
}

/// GET_ALL_CONSUMER_OFFSET (43) body: `{"offsetTable":{"topic@group":{queueId:offset,...}}}`;
/// group → topics it has committed offsets on. Offsets themselves are skipped unparsed.
pub fn topics_by_group(
    body: &[u8],
) -> Result<std::collections::HashMap<String, Vec<String>>, BodyError> {
    let keys = fastjson::object_keys(body, "offsetTable")?.ok_or(BodyError::Field {
        what: "ConsumerOffsetSerializeWrapper",
        field: "offsetTable",
    })?;
    let mut out: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for key in keys {
        // Topic and group names cannot contain '@' (TopicValidator), so the split is exact.
        if let Some((topic, group)) = key.split_once('@') {
            out.entry(group.to_string())
                .or_default()
                .push(topic.to_string());
        }
    }
    Ok(out)
}

/// One queue's offsets from `ConsumeStats.offsetTable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOffsets {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
    pub broker_offset: i64,
    pub consumer_offset: i64,
    /// Absent before 5.1 (RIP-48): then it equals the consumer offset.
    pub pull_offset: Option<i64>,
    pub last_timestamp: i64,
}

/// GET_CONSUME_STATS (208) body: `ConsumeStats`.
pub fn consume_stats(body: &[u8]) -> Result<Vec<QueueOffsets>, BodyError> {
    let v = parse(body)?;
    let mut out = Vec::new();
    for (mq, w) in v.get("offsetTable").entries() {
        let field = |f: &'static str| BodyError::Field {
            what: "ConsumeStats",
            field: f,
        };
        out.push(QueueOffsets {
            topic: mq
                .get("topic")
                .as_str()
                .ok_or_else(|| field("topic"))?
                .to_string(),
            broker_name: mq
                .get("brokerName")
                .as_str()
                .unwrap_or_default()
                .to_string(),
            queue_id: mq.get("queueId").as_i64().ok_or_else(|| field("queueId"))? as i32,
            broker_offset: w
                .get("brokerOffset")
                .as_i64()
                .ok_or_else(|| field("brokerOffset"))?,
            consumer_offset: w
                .get("consumerOffset")
                .as_i64()
                .ok_or_else(|| field("consumerOffset"))?,
            pull_offset: w.get("pullOffset").as_i64(),
            last_timestamp: w.get("lastTimestamp").as_i64().unwrap_or(0),
        });
    }
    Ok(out)
}

/// GET_CONSUMER_CONNECTION_LIST (203) body: `ConsumerConnection`; the number of online clients.
pub fn consumer_connections(body: &[u8]) -> Result<usize, BodyError> {
    let v = parse(body)?;
    Ok(v.get("connectionSet").items().len())
}

/// QUERY_CONSUME_QUEUE (321) body: the commit-log offset of the first entry returned.
pub fn consume_queue_physical_offset(body: &[u8]) -> Result<Option<i64>, BodyError> {
    let v = parse(body)?;
    Ok(v.get("queueData")
        .items()
        .first()
        .and_then(|e| e.get("physicOffset").as_i64()))
}

/// VIEW_MESSAGE_BY_ID (33) body: a stored message; returns its store timestamp.
///
/// Layout (apache/rocketmq `MessageDecoder.decode`): totalSize i32, magic i32, bodyCRC i32,
/// queueId i32, flag i32, queueOffset i64, physicalOffset i64, sysFlag i32, bornTimestamp i64,
/// bornHost (4-byte IPv4 or 16-byte IPv6 when sysFlag bit 4 is set) + port i32, storeTimestamp i64.
pub fn message_store_timestamp(body: &[u8]) -> Option<i64> {
    const BORNHOST_V6_FLAG: i32 = 1 << 4;
    let mut r = super::codec::Reader::new(body);
    r.take(4 * 5 + 8 + 8)?;
    let sys_flag = r.i32()?;
    r.i64()?;
    let host_len = if sys_flag & BORNHOST_V6_FLAG != 0 {
        16
    } else {
        4
    };
    r.take(host_len + 4)?;
    r.i64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cluster_info_with_bare_numeric_ids() {
        let body = br#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#;
        let b = cluster_info(body).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].cluster, "DefaultCluster");
        assert_eq!(b[0].read_addr(), Some("127.0.0.1:10911"));
        assert!(b[0].has_master());
    }

    #[test]
    fn slave_is_read_when_master_is_gone() {
        let body = br#"{"brokerAddrTable":{"b":{"brokerAddrs":{"2":"h:2","1":"h:1"},"brokerName":"b","cluster":"C"}}}"#;
        let b = cluster_info(body).unwrap();
        assert!(!b[0].has_master());
        assert_eq!(b[0].read_addr(), Some("h:1"));
    }

    #[test]
    fn negative_broker_ids_are_ignored() {
        // Found by fuzz/ (remoting_bodies): id -10 sorted before the master and was read instead.
        let body = br#"{"brokerAddrTable":{"b":{"brokerAddrs":{-10:"h:x",0:"h:0",1:"h:1"},"brokerName":"b"}}}"#;
        let b = cluster_info(body).unwrap();
        assert_eq!(b[0].read_addr(), Some("h:0"));
        assert_eq!(b[0].addrs.len(), 2);
        let body = br#"{"brokerAddrTable":{"b":{"brokerAddrs":{"-1":"h:x","2":"h:2"}}}}"#;
        assert_eq!(cluster_info(body).unwrap()[0].read_addr(), Some("h:2"));
    }

    #[test]
    fn consume_stats_from_4x_has_no_pull_offset() {
        let body = br#"{"consumeTps":0.0,"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"brokerOffset":10,"consumerOffset":4,"lastTimestamp":1700000000000}}}"#;
        let q = consume_stats(body).unwrap();
        assert_eq!(q[0].broker_offset, 10);
        assert_eq!(q[0].consumer_offset, 4);
        assert_eq!(q[0].pull_offset, None);
    }

    #[test]
    fn consume_stats_from_5x_has_pull_offset() {
        let body = br#"{"consumeTps":1.5,"offsetTable":{{"brokerName":"broker-a","queueId":3,"topic":"MyTopic"}:{"brokerOffset":100,"consumerOffset":90,"lastTimestamp":1700000000000,"pullOffset":95}}}"#;
        let q = consume_stats(body).unwrap();
        assert_eq!(q[0].queue_id, 3);
        assert_eq!(q[0].pull_offset, Some(95));
    }

    #[test]
    fn consume_stats_missing_offsets_is_an_error() {
        let body =
            br#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"consumerOffset":1}}}"#;
        let e = consume_stats(body).unwrap_err().to_string();
        assert!(e.contains("brokerOffset"), "{e}");
    }

    #[test]
    fn subscription_groups_without_newer_fields() {
        let body = br#"{"dataVersion":{"counter":1,"timestamp":1},"subscriptionGroupTable":{"G1":{"brokerId":0,"consumeBroadcastEnable":true,"groupName":"G1"},"G2":{"groupName":"G2"}}}"#;
        assert_eq!(subscription_groups(body).unwrap(), vec!["G1", "G2"]);
        assert!(subscription_groups(br#"{"dataVersion":{}}"#).is_err());
    }

    #[test]
    fn topics_by_group_from_all_consumer_offsets() {
        let body = br#"{"dataVersion":{"counter":3},"offsetTable":{"T1@G":{0:5,1:7},"%RETRY%G@G":{0:0},"T1@H":{0:1}}}"#;
        let t = topics_by_group(body).unwrap();
        assert_eq!(t["G"], vec!["T1", "%RETRY%G"]);
        assert_eq!(t["H"], vec!["T1"]);
        assert!(topics_by_group(b"{}").is_err());
    }

    #[test]
    fn connection_count() {
        let body = br#"{"connectionSet":[{"clientAddr":"a","clientId":"x","language":"JAVA","version":1},{"clientId":"y"}],"consumeType":"CONSUME_PASSIVELY"}"#;
        assert_eq!(consumer_connections(body).unwrap(), 2);
    }

    #[test]
    fn store_timestamp_of_ipv4_message() {
        let mut m = Vec::new();
        for v in [100i32, 0, 0, 1, 0] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        m.extend_from_slice(&5i64.to_be_bytes());
        m.extend_from_slice(&6i64.to_be_bytes());
        m.extend_from_slice(&0i32.to_be_bytes());
        m.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        m.extend_from_slice(&[127, 0, 0, 1, 0, 0, 0x27, 0x10]);
        m.extend_from_slice(&1_700_000_000_123i64.to_be_bytes());
        assert_eq!(message_store_timestamp(&m), Some(1_700_000_000_123));
        assert_eq!(message_store_timestamp(&m[..m.len() - 1]), None);
    }

    proptest! {
        #[test]
        fn body_readers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = cluster_info(&data);
            let _ = subscription_groups(&data);
            let _ = consume_stats(&data);
            let _ = topics_by_group(&data);
            let _ = consumer_connections(&data);
            let _ = consume_queue_physical_offset(&data);
            let _ = message_store_timestamp(&data);
        }
    }
}
