//! The lenient fastjson reader: `parse` (full tree, every accessor walked) and `object_keys` (the
//! keys-only scanner used for the big subscription-group and consumer-offset tables). Whenever the
//! full parse accepts an object, `object_keys` must accept it too and return the same keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmq_exporter::source::remoting::fastjson::{object_keys, parse, Value};

fn walk(v: &Value) {
    let _ = (
        v.as_str(),
        v.as_i64(),
        v.as_f64(),
        v.key_text(),
        v.is_null(),
    );
    let _ = v.get("offsetTable");
    for (k, v) in v.entries() {
        walk(k);
        walk(v);
    }
    for item in v.items() {
        walk(item);
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);
    if let Ok(v) = &parsed {
        walk(v);
    }
    let mut fields = vec![
        "offsetTable".to_string(),
        "subscriptionGroupTable".to_string(),
    ];
    if let Ok(Value::Object(entries)) = &parsed {
        fields.extend(
            entries
                .iter()
                .filter_map(|(k, _)| k.as_str().map(str::to_string))
                .take(2),
        );
    }
    for field in &fields {
        let keys = object_keys(data, field);
        if let Ok(Value::Object(entries)) = &parsed {
            // object_keys reads the first `field` whose value is an object; its string keys.
            let expected = entries
                .iter()
                .find(|(k, v)| k.as_str() == Some(field.as_str()) && matches!(v, Value::Object(_)))
                .map(|(_, v)| {
                    v.entries()
                        .iter()
                        .filter_map(|(k, _)| k.as_str().map(str::to_string))
                        .collect::<Vec<_>>()
                });
            assert_eq!(
                keys,
                Ok(expected),
                "object_keys disagrees with parse on {field:?}"
            );
        }
    }
});
