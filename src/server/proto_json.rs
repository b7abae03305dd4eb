//! CRI messages as the JSON of containerd's verbose status: proto field names
//! (`cpu_period`), integers as numbers, enums as numbers, default values left out, as Go's
//! encoding/json writes the generated structs (`json:"cpu_period,omitempty"`).

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

/// The CRI descriptors, decoded once.
fn pool() -> Option<&'static DescriptorPool> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(
        || match DescriptorPool::decode(crid_api::FILE_DESCRIPTOR_SET) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!("the embedded CRI descriptor set does not decode: {e}");
                None
            }
        },
    )
    .as_ref()
}

/// `message` (of CRI type `runtime.v1.<name>`) as JSON; `null` if the descriptors cannot
/// describe it (which a test rules out for the messages crid reports).
pub fn to_json(name: &str, message: &impl prost::Message) -> serde_json::Value {
    let convert = || -> Option<serde_json::Value> {
        let desc = pool()?.get_message_by_name(&format!("runtime.v1.{name}"))?;
        let dynamic = DynamicMessage::decode(desc, message.encode_to_vec().as_slice()).ok()?;
        let options = SerializeOptions::new()
            .stringify_64_bit_integers(false)
            .use_enum_numbers(true)
            .use_proto_field_name(true)
            .skip_default_fields(true);
        dynamic
            .serialize_with_options(serde_json::value::Serializer, &options)
            .ok()
    };
    convert().unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use crid_api::cri;

    use super::*;

    #[test]
    fn a_pod_config_reads_as_containerds_config_key() {
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "p".into(),
                ..Default::default()
            }),
            linux: Some(cri::LinuxPodSandboxConfig {
                resources: Some(cri::LinuxContainerResources {
                    cpu_period: 100_000,
                    memory_swap_limit_in_bytes: -1,
                    hugepage_limits: vec![cri::HugepageLimit {
                        page_size: "2MB".into(),
                        limit: 4 << 20,
                    }],
                    unified: [("memory.high".to_owned(), "max".to_owned())].into(),
                    ..Default::default()
                }),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        pid: cri::NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = to_json("PodSandboxConfig", &config);
        assert_eq!(v["metadata"], serde_json::json!({"name": "p"}));
        let r = &v["linux"]["resources"];
        assert_eq!(r["cpu_period"], 100_000);
        assert_eq!(r["memory_swap_limit_in_bytes"], -1);
        assert!(r.get("cpu_quota").is_none(), "{r}");
        assert_eq!(r["hugepage_limits"][0]["page_size"], "2MB");
        assert_eq!(r["hugepage_limits"][0]["limit"], 4 << 20);
        assert_eq!(r["unified"]["memory.high"], "max");
        assert_eq!(
            v["linux"]["security_context"]["namespace_options"]["pid"],
            cri::NamespaceMode::Container as i32
        );
    }
}
