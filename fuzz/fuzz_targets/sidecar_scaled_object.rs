//! The sidecar's ScaledObject / TriggerAuthentication reader (`rmq_sidecar::config::parse_str`):
//! multi-document YAML → validated specs. Secrets come from a fixed in-memory source (no files, no
//! environment). For every parsed Prometheus trigger the query URL is built too.
#![no_main]

use std::time::UNIX_EPOCH;

use libfuzzer_sys::fuzz_target;
use rmq_sidecar::config::{parse_str, SecretSource, TriggerSource};
use rmq_sidecar::source::prometheus_url;

/// Every secret exists (`<secret>/<key>` → a fixed value) except those named `missing*`; keys
/// named like a header give a valid header name, `authModes` gives `basic`.
struct FixedSecrets;

impl SecretSource for FixedSecrets {
    fn lookup(&self, secret: &str, key: &str) -> Result<String, String> {
        if secret.starts_with("missing") {
            Err(format!("no secret {secret}"))
        } else if key.contains("Header") {
            Ok("Authorization".into())
        } else if key == "authModes" {
            Ok("basic".into())
        } else {
            Ok(format!("value-{key}"))
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_str(&text, &FixedSecrets) {
        Ok(specs) => {
            assert!(!specs.is_empty());
            for spec in &specs {
                for trigger in &spec.triggers {
                    if let TriggerSource::Prometheus(p) = &trigger.source {
                        let _ = prometheus_url(p, UNIX_EPOCH);
                    }
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
