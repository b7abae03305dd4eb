//! cri:api.proto#wire-format — our transcription is wire-compatible with a descriptor
//! that upstream's own toolchain generated.
//!
//! The reference is the PyPI package `container-runtime-interface-api` (module
//! `cri_api.v1.api_pb2`, protoc output of kubernetes/cri-api from 2025).
//! `scripts/upstream_descriptor.py` dumps it as JSON; this test compares it with
//! `crid_api::FILE_DESCRIPTOR_SET`. Every upstream message, field, enum value,
//! service and method must exist in ours with the same number, type, label, type
//! name, oneof, deprecation and streaming flags. Ours may have more: cri-api releases after the
//! package add fields and RPCs.
//!
//! The python interpreter is `$CRID_TEST_PYTHON`, or `<workspace>/.venv/bin/python`
//! which `scripts/setup.sh` creates. A missing interpreter or package fails the test.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use prost::Message as _;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FileDescriptorProto, FileDescriptorSet,
    field_descriptor_proto::{Label, Type},
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Descriptor {
    package: String,
    syntax: String,
    messages: Vec<MessageDesc>,
    enums: Vec<EnumDesc>,
    services: Vec<ServiceDesc>,
}

#[derive(Debug, Deserialize)]
struct MessageDesc {
    name: String,
    map_entry: bool,
    fields: Vec<FieldDesc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct FieldDesc {
    name: String,
    number: i32,
    r#type: String,
    label: String,
    type_name: String,
    oneof: Option<String>,
    proto3_optional: bool,
    map: bool,
    deprecated: bool,
}

#[derive(Debug, Deserialize)]
struct EnumDesc {
    name: String,
    values: Vec<EnumValueDesc>,
}

#[derive(Debug, Deserialize)]
struct EnumValueDesc {
    name: String,
    number: i32,
}

#[derive(Debug, Deserialize)]
struct ServiceDesc {
    name: String,
    methods: Vec<MethodDesc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct MethodDesc {
    name: String,
    input_type: String,
    output_type: String,
    client_streaming: bool,
    server_streaming: bool,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crid-api lives in a workspace directory")
        .to_path_buf()
}

/// Runs `scripts/upstream_descriptor.py` and parses its JSON. Panics, naming the fix,
/// when the interpreter or the package is missing: this test must not pass vacuously.
fn upstream() -> Descriptor {
    let root = workspace_root();
    let python = std::env::var_os("CRID_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    let script = root.join("scripts/upstream_descriptor.py");
    let hint = "run scripts/setup.sh to create .venv with the PyPI package \
                container-runtime-interface-api, or point CRID_TEST_PYTHON at a python \
                that has it";

    assert!(
        python.exists(),
        "cri:api.proto#wire-format: python interpreter {} not found; {hint}",
        python.display()
    );
    let output = Command::new(&python)
        .arg(&script)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cri:api.proto#wire-format: cannot run {} {}: {e}; {hint}",
                python.display(),
                script.display()
            )
        });
    assert!(
        output.status.success(),
        "cri:api.proto#wire-format: {} {} failed ({}): {}; {hint}",
        python.display(),
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("cri:api.proto#wire-format: upstream_descriptor.py printed invalid JSON: {e}")
    })
}

/// Our descriptor, in the same shape as the script's output.
fn ours() -> Descriptor {
    let set = FileDescriptorSet::decode(crid_api::FILE_DESCRIPTOR_SET)
        .expect("FILE_DESCRIPTOR_SET decodes as a FileDescriptorSet");
    let file: FileDescriptorProto = set
        .file
        .into_iter()
        .find(|f| f.package() == crid_api::PACKAGE)
        .expect("FILE_DESCRIPTOR_SET holds a file of package runtime.v1");
    let prefix = format!(".{}", file.package());

    let mut messages = Vec::new();
    let mut enums = Vec::new();
    walk_enums(&prefix, &file.enum_type, &mut enums);
    walk_messages(&prefix, &file.message_type, &mut messages, &mut enums);

    let services = file
        .service
        .iter()
        .map(|s| ServiceDesc {
            name: format!("{}.{}", file.package(), s.name()),
            methods: s
                .method
                .iter()
                .map(|m| MethodDesc {
                    name: m.name().to_owned(),
                    input_type: m.input_type().to_owned(),
                    output_type: m.output_type().to_owned(),
                    client_streaming: m.client_streaming(),
                    server_streaming: m.server_streaming(),
                })
                .collect(),
        })
        .collect();

    Descriptor {
        package: file.package().to_owned(),
        syntax: file.syntax().to_owned(),
        messages,
        enums,
        services,
    }
}

fn walk_messages(
    prefix: &str,
    messages: &[DescriptorProto],
    out: &mut Vec<MessageDesc>,
    enums: &mut Vec<EnumDesc>,
) {
    for msg in messages {
        let full = format!("{prefix}.{}", msg.name());
        let map_entries: BTreeSet<String> = msg
            .nested_type
            .iter()
            .filter(|n| n.options.as_ref().is_some_and(|o| o.map_entry()))
            .map(|n| format!("{full}.{}", n.name()))
            .collect();
        let fields = msg
            .field
            .iter()
            .map(|f| {
                let oneof = match f.oneof_index {
                    Some(i) if !f.proto3_optional() => Some(
                        msg.oneof_decl
                            .get(usize::try_from(i).expect("oneof index is non-negative"))
                            .map(|o| o.name().to_owned())
                            .unwrap_or_default(),
                    ),
                    _ => None,
                };
                FieldDesc {
                    name: f.name().to_owned(),
                    number: f.number(),
                    r#type: Type::try_from(f.r#type.unwrap_or_default())
                        .map(|t| t.as_str_name().to_owned())
                        .unwrap_or_else(|_| format!("{:?}", f.r#type)),
                    label: Label::try_from(f.label.unwrap_or_default())
                        .map(|l| l.as_str_name().to_owned())
                        .unwrap_or_else(|_| format!("{:?}", f.label)),
                    type_name: f.type_name().to_owned(),
                    oneof,
                    proto3_optional: f.proto3_optional(),
                    map: map_entries.contains(f.type_name()),
                    deprecated: f.options.as_ref().is_some_and(|o| o.deprecated()),
                }
            })
            .collect();
        out.push(MessageDesc {
            name: full.trim_start_matches('.').to_owned(),
            map_entry: msg.options.as_ref().is_some_and(|o| o.map_entry()),
            fields,
        });
        walk_enums(&full, &msg.enum_type, enums);
        walk_messages(&full, &msg.nested_type, out, enums);
    }
}

fn walk_enums(prefix: &str, enums: &[EnumDescriptorProto], out: &mut Vec<EnumDesc>) {
    for e in enums {
        out.push(EnumDesc {
            name: format!("{prefix}.{}", e.name())
                .trim_start_matches('.')
                .to_owned(),
            values: e
                .value
                .iter()
                .map(|v| EnumValueDesc {
                    name: v.name().to_owned(),
                    number: v.number(),
                })
                .collect(),
        });
    }
}

/// The attributes of a field that differ, as "attr ours (upstream theirs)".
fn field_diff(ours: &FieldDesc, up: &FieldDesc) -> String {
    let mut diffs = Vec::new();
    let mut cmp = |attr: &str, o: String, u: String| {
        if o != u {
            diffs.push(format!("{attr} {o} (upstream {u})"));
        }
    };
    cmp("number", ours.number.to_string(), up.number.to_string());
    cmp("type", ours.r#type.clone(), up.r#type.clone());
    cmp("label", ours.label.clone(), up.label.clone());
    cmp("type_name", ours.type_name.clone(), up.type_name.clone());
    cmp(
        "oneof",
        format!("{:?}", ours.oneof),
        format!("{:?}", up.oneof),
    );
    cmp(
        "proto3_optional",
        ours.proto3_optional.to_string(),
        up.proto3_optional.to_string(),
    );
    cmp("map", ours.map.to_string(), up.map.to_string());
    cmp(
        "deprecated",
        ours.deprecated.to_string(),
        up.deprecated.to_string(),
    );
    diffs.join(", ")
}

fn report(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "cri:api.proto#wire-format: {} {what} difference(s) from the upstream descriptor:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn cri_api_proto_wire_format_package_matches_upstream() {
    let (up, ours) = (upstream(), ours());
    assert_eq!(
        ours.package, up.package,
        "cri:api.proto#wire-format: proto package"
    );
    assert_eq!(
        ours.syntax, up.syntax,
        "cri:api.proto#wire-format: proto syntax"
    );
    // The reference must be the real thing, not an empty or truncated dump.
    let rpcs: usize = up.services.iter().map(|s| s.methods.len()).sum();
    assert!(
        rpcs >= 35 && up.messages.len() >= 158,
        "cri:api.proto#wire-format: upstream descriptor looks truncated \
         ({rpcs} RPCs, {} messages)",
        up.messages.len()
    );
}

#[test]
fn cri_api_proto_wire_format_messages_match_upstream() {
    let (up, ours) = (upstream(), ours());
    let ours_by_name: BTreeMap<&str, &MessageDesc> =
        ours.messages.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut problems = Vec::new();
    let mut added_fields = Vec::new();

    for up_msg in &up.messages {
        let Some(our_msg) = ours_by_name.get(up_msg.name.as_str()) else {
            problems.push(format!("message {} is missing", up_msg.name));
            continue;
        };
        if our_msg.map_entry != up_msg.map_entry {
            problems.push(format!(
                "message {}: map_entry is {}, upstream {}",
                up_msg.name, our_msg.map_entry, up_msg.map_entry
            ));
        }
        let our_fields: BTreeMap<&str, &FieldDesc> = our_msg
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f))
            .collect();
        for up_field in &up_msg.fields {
            let at = format!("{}.{}", up_msg.name, up_field.name);
            match our_fields.get(up_field.name.as_str()) {
                None => {
                    let by_number = our_msg.fields.iter().find(|f| f.number == up_field.number);
                    problems.push(match by_number {
                        Some(f) => format!(
                            "field {at} (= {}) is missing; our field {} has that number",
                            up_field.number, f.name
                        ),
                        None => format!("field {at} (= {}) is missing", up_field.number),
                    });
                }
                Some(our) if **our != *up_field => {
                    problems.push(format!("field {at}: {}", field_diff(our, up_field)));
                }
                Some(_) => {}
            }
        }
        let up_names: BTreeSet<&str> = up_msg.fields.iter().map(|f| f.name.as_str()).collect();
        added_fields.extend(
            our_msg
                .fields
                .iter()
                .filter(|f| !up_names.contains(f.name.as_str()))
                .map(|f| format!("{}.{} = {}", up_msg.name, f.name, f.number)),
        );
    }

    let up_names: BTreeSet<&str> = up.messages.iter().map(|m| m.name.as_str()).collect();
    let added_messages: Vec<_> = ours
        .messages
        .iter()
        .filter(|m| !up_names.contains(m.name.as_str()))
        .map(|m| m.name.as_str())
        .collect();
    eprintln!("messages newer than the upstream descriptor: {added_messages:?}");
    eprintln!("fields newer than the upstream descriptor: {added_fields:?}");

    report("message", &problems);
}

#[test]
fn cri_api_proto_wire_format_enums_match_upstream() {
    let (up, ours) = (upstream(), ours());
    let ours_by_name: BTreeMap<&str, &EnumDesc> =
        ours.enums.iter().map(|e| (e.name.as_str(), e)).collect();
    let mut problems = Vec::new();

    for up_enum in &up.enums {
        let Some(our_enum) = ours_by_name.get(up_enum.name.as_str()) else {
            problems.push(format!("enum {} is missing", up_enum.name));
            continue;
        };
        let our_values: BTreeMap<&str, i32> = our_enum
            .values
            .iter()
            .map(|v| (v.name.as_str(), v.number))
            .collect();
        for v in &up_enum.values {
            match our_values.get(v.name.as_str()) {
                None => problems.push(format!(
                    "enum value {}.{} (= {}) is missing",
                    up_enum.name, v.name, v.number
                )),
                Some(n) if *n != v.number => problems.push(format!(
                    "enum value {}.{} is {n}, upstream {}",
                    up_enum.name, v.name, v.number
                )),
                Some(_) => {}
            }
        }
        let up_names: BTreeSet<&str> = up_enum.values.iter().map(|v| v.name.as_str()).collect();
        for v in our_enum
            .values
            .iter()
            .filter(|v| !up_names.contains(v.name.as_str()))
        {
            eprintln!(
                "enum value newer than the upstream descriptor: {}.{}",
                up_enum.name, v.name
            );
        }
    }

    report("enum", &problems);
}

#[test]
fn cri_api_proto_wire_format_services_match_upstream() {
    let (up, ours) = (upstream(), ours());
    let ours_by_name: BTreeMap<&str, &ServiceDesc> =
        ours.services.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut problems = Vec::new();

    for up_svc in &up.services {
        let Some(our_svc) = ours_by_name.get(up_svc.name.as_str()) else {
            problems.push(format!("service {} is missing", up_svc.name));
            continue;
        };
        let our_methods: BTreeMap<&str, &MethodDesc> = our_svc
            .methods
            .iter()
            .map(|m| (m.name.as_str(), m))
            .collect();
        for up_m in &up_svc.methods {
            match our_methods.get(up_m.name.as_str()) {
                None => problems.push(format!("rpc {}.{} is missing", up_svc.name, up_m.name)),
                Some(our) if **our != *up_m => problems.push(format!(
                    "rpc {}.{}: ours {our:?}, upstream {up_m:?}",
                    up_svc.name, up_m.name
                )),
                Some(_) => {}
            }
        }
        let up_names: BTreeSet<&str> = up_svc.methods.iter().map(|m| m.name.as_str()).collect();
        let added: Vec<_> = our_svc
            .methods
            .iter()
            .filter(|m| !up_names.contains(m.name.as_str()))
            .map(|m| m.name.as_str())
            .collect();
        eprintln!(
            "{} RPCs newer than the upstream descriptor: {added:?}",
            up_svc.name
        );
    }

    report("service", &problems);
}
