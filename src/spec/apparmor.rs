//! AppArmor: which profile a container runs under, from `security_context.apparmor`
//! (cri:SecurityProfile) and its deprecated string twin `apparmor_profile`, and the text of
//! crid's own default profile, [`DEFAULT_PROFILE`].
//!
//! The rules, as the kubelet expects them of a runtime (Kubernetes' AppArmor semantics):
//! `RuntimeDefault` (or nothing at all) is the runtime's default profile, `Unconfined` is no
//! profile, `Localhost` names a profile already loaded on the node. A privileged container
//! gets no profile unless one is asked for explicitly. On a host without AppArmor there is
//! no default profile to apply, so `RuntimeDefault` means none, as in containerd and CRI-O;
//! a `Localhost` profile cannot be honoured there and is refused. Pure: whether the host
//! enforces AppArmor comes in as a flag, and whether a named profile is loaded is the
//! caller's to check (`crate::host::apparmor`).

use cri::security_profile::ProfileType;
use crid_api::cri;

use super::SpecError;

/// The name of crid's own profile, given to containers that ask for `RuntimeDefault`.
pub const DEFAULT_PROFILE: &str = "crid-default";

const STRUCTURED_TYPE: &str = "config.linux.security_context.apparmor.profile_type";
const STRUCTURED_REF: &str = "config.linux.security_context.apparmor.localhost_ref";
const DEPRECATED: &str = "config.linux.security_context.apparmor_profile";

/// The profile a container runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// No profile: the process is `unconfined`.
    None,
    /// crid's [`DEFAULT_PROFILE`], loaded by crid.
    Default,
    /// A profile someone loaded on the node; the caller checks that it is loaded.
    Localhost {
        /// The profile's name as the kernel lists it.
        name: String,
        /// The request field that named it, for errors.
        field: &'static str,
    },
}

impl Profile {
    /// The name that goes into the OCI spec's `process.apparmorProfile` (empty for none).
    pub fn oci_name(&self) -> &str {
        match self {
            Profile::None => "",
            Profile::Default => DEFAULT_PROFILE,
            Profile::Localhost { name, .. } => name,
        }
    }
}

/// What a request asks for, before the host is considered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    Unset,
    RuntimeDefault,
    Unconfined,
    Localhost(String, &'static str),
}

/// The profile of a container with security context `sc` on a host that does
/// (`host_enforces`) or does not enforce AppArmor.
pub fn profile(
    sc: &cri::LinuxContainerSecurityContext,
    host_enforces: bool,
) -> Result<Profile, SpecError> {
    // The structured field wins over the deprecated string when both are set, as the
    // kubelet sets both from one source and the string exists only for older runtimes.
    let request = match &sc.apparmor {
        Some(p) => structured(p)?,
        None => deprecated(deprecated_field(sc))?,
    };
    Ok(match request {
        Request::Unconfined => Profile::None,
        Request::Unset if sc.privileged => Profile::None,
        Request::Unset | Request::RuntimeDefault if !host_enforces => Profile::None,
        Request::Unset | Request::RuntimeDefault => Profile::Default,
        Request::Localhost(name, field) if !host_enforces => {
            return Err(SpecError::Invalid {
                field,
                reason: format!(
                    "AppArmor profile `{name}` cannot be applied: this host does not enforce \
                     AppArmor (/sys/module/apparmor/parameters/enabled is not Y, or \
                     apparmor_parser is missing)"
                ),
            });
        }
        Request::Localhost(name, field) => Profile::Localhost { name, field },
    })
}

#[allow(deprecated)] // Read on purpose: older kubelets send only this field.
fn deprecated_field(sc: &cri::LinuxContainerSecurityContext) -> &str {
    &sc.apparmor_profile
}

fn structured(p: &cri::SecurityProfile) -> Result<Request, SpecError> {
    match ProfileType::try_from(p.profile_type) {
        Ok(ProfileType::RuntimeDefault) => Ok(Request::RuntimeDefault),
        Ok(ProfileType::Unconfined) => Ok(Request::Unconfined),
        // The kubelet sends the bare name; a `localhost/` prefix (the deprecated form) is
        // taken off, as no loaded profile is named that way.
        Ok(ProfileType::Localhost) => localhost(
            p.localhost_ref
                .strip_prefix("localhost/")
                .unwrap_or(&p.localhost_ref),
            STRUCTURED_REF,
        ),
        Err(_) => Err(SpecError::Invalid {
            field: STRUCTURED_TYPE,
            reason: format!("unknown profile type {}", p.profile_type),
        }),
    }
}

/// The deprecated string: `runtime/default`, `unconfined`, `localhost/<name>` or empty.
fn deprecated(value: &str) -> Result<Request, SpecError> {
    match value {
        "" => Ok(Request::Unset),
        "runtime/default" => Ok(Request::RuntimeDefault),
        "unconfined" => Ok(Request::Unconfined),
        v => match v.strip_prefix("localhost/") {
            Some(name) => localhost(name, DEPRECATED),
            None => Err(SpecError::Invalid {
                field: DEPRECATED,
                reason: format!(
                    "`{v}` is not `runtime/default`, `unconfined` or `localhost/<profile>`"
                ),
            }),
        },
    }
}

fn localhost(name: &str, field: &'static str) -> Result<Request, SpecError> {
    if name.is_empty() {
        return Err(SpecError::Invalid {
            field,
            reason: "a Localhost AppArmor profile needs a name".into(),
        });
    }
    // The runtime writes the name into /proc/<pid>/attr; a line break or NUL would end it.
    if name.chars().any(char::is_control) {
        return Err(SpecError::Invalid {
            field,
            reason: format!("AppArmor profile name {name:?} has a control character"),
        });
    }
    Ok(Request::Localhost(name.to_owned(), field))
}

/// The policy text of [`DEFAULT_PROFILE`], for `apparmor_parser -Kr` (read from stdin).
///
/// It allows what a process may do without AppArmor and then takes away what lets a
/// container reach outside itself: mounting, kernel tunables outside its namespaces,
/// /sys outside the cgroup tree, kernel memory and triggers, and tracing or signalling
/// processes of other profiles. It includes no files, so it loads on any host with a parser.
pub fn default_profile_text() -> String {
    let p = DEFAULT_PROFILE;
    format!(
        r#"# {p}: crid's AppArmor profile for containers whose config asks for RuntimeDefault.
# Generated by crid {version}; loaded with `apparmor_parser -Kr` when not loaded.
profile {p} flags=(attach_disconnected,mediate_deleted) {{
  # What an unconfined process may do; the deny rules below take precedence.
  network,
  capability,
  file,
  umount,

  # Signals from the runtime and the daemon (unconfined), and within the container.
  signal (receive) peer=unconfined,
  signal (send,receive) peer={p},
  # Tracing only between processes of this profile: never a process outside it.
  ptrace (trace,read,tracedby,readby) peer={p},

  # No mounts: a container's file system is set up before its process starts.
  deny mount,

  # Kernel tunables: only the IPC namespace's (kernel/shm*, kernel/msg*, kernel/sem*) and
  # the network namespace's (net/) belong to the container.
  deny /proc/sys/[^kn]** wklx,
  deny /proc/sys/k[^e]** wklx,
  deny /proc/sys/n[^e]** wklx,
  deny /proc/sys/kernel/[^sm]** wklx,
  deny /proc/sys/kernel/s[^he]** wklx,
  deny /proc/sys/kernel/sh[^m]** wklx,
  deny /proc/sys/kernel/se[^m]** wklx,
  deny /proc/sys/kernel/m[^s]** wklx,
  deny /proc/sysrq-trigger rwklx,
  deny /proc/kcore rwklx,
  deny /proc/kmem rwklx,
  deny /proc/mem rwklx,
  deny /proc/acpi/** rwklx,

  # /sys: writable only under /sys/fs/cgroup (the container's cgroup namespace).
  deny /sys/[^f]** wklx,
  deny /sys/f[^s]** wklx,
  deny /sys/fs/[^c]** wklx,
  deny /sys/fs/c[^g]** wklx,
  deny /sys/fs/cg[^r]** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,
}}
"#,
        version = env!("CARGO_PKG_VERSION"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(
        apparmor: Option<(ProfileType, &str)>,
        deprecated: &str,
    ) -> cri::LinuxContainerSecurityContext {
        #[allow(deprecated)] // Building requests that carry the deprecated field.
        cri::LinuxContainerSecurityContext {
            apparmor: apparmor.map(|(t, r)| cri::SecurityProfile {
                profile_type: t as i32,
                localhost_ref: r.into(),
            }),
            apparmor_profile: deprecated.into(),
            ..Default::default()
        }
    }

    fn localhost(name: &str, field: &'static str) -> Profile {
        Profile::Localhost {
            name: name.into(),
            field,
        }
    }

    #[test]
    fn on_an_apparmor_host_each_structured_type_maps_to_its_profile() {
        let rd = profile(&sc(Some((ProfileType::RuntimeDefault, "")), ""), true);
        assert_eq!(rd, Ok(Profile::Default));
        let un = profile(&sc(Some((ProfileType::Unconfined, "")), ""), true);
        assert_eq!(un, Ok(Profile::None));
        let lh = profile(&sc(Some((ProfileType::Localhost, "k8s-x")), ""), true);
        assert_eq!(lh, Ok(localhost("k8s-x", STRUCTURED_REF)));
        // The deprecated form's prefix is tolerated in the structured field too.
        let lh = profile(
            &sc(Some((ProfileType::Localhost, "localhost/k8s-x")), ""),
            true,
        );
        assert_eq!(lh, Ok(localhost("k8s-x", STRUCTURED_REF)));
    }

    #[test]
    fn unset_means_the_default_profile_except_for_privileged_containers() {
        assert_eq!(profile(&sc(None, ""), true), Ok(Profile::Default));
        let mut privileged = sc(None, "");
        privileged.privileged = true;
        assert_eq!(profile(&privileged, true), Ok(Profile::None));
        // Asked for explicitly, a privileged container gets it.
        let mut explicit = sc(Some((ProfileType::RuntimeDefault, "")), "");
        explicit.privileged = true;
        assert_eq!(profile(&explicit, true), Ok(Profile::Default));
        let mut named = sc(Some((ProfileType::Localhost, "p")), "");
        named.privileged = true;
        assert_eq!(profile(&named, true), Ok(localhost("p", STRUCTURED_REF)));
    }

    #[test]
    fn the_deprecated_string_is_read_when_the_structured_field_is_absent() {
        let rd = profile(&sc(None, "runtime/default"), true);
        assert_eq!(rd, Ok(Profile::Default));
        assert_eq!(profile(&sc(None, "unconfined"), true), Ok(Profile::None));
        assert_eq!(
            profile(&sc(None, "localhost/k8s-y"), true),
            Ok(localhost("k8s-y", DEPRECATED))
        );
    }

    #[test]
    fn the_structured_field_wins_over_the_deprecated_string() {
        let both = sc(Some((ProfileType::Unconfined, "")), "localhost/k8s-y");
        assert_eq!(profile(&both, true), Ok(Profile::None));
        let both = sc(Some((ProfileType::Localhost, "k8s-x")), "unconfined");
        assert_eq!(profile(&both, true), Ok(localhost("k8s-x", STRUCTURED_REF)));
        // Even a malformed deprecated string is not read when the structured field is set.
        let both = sc(Some((ProfileType::RuntimeDefault, "")), "bogus");
        assert_eq!(profile(&both, true), Ok(Profile::Default));
    }

    #[test]
    fn malformed_requests_name_their_field() {
        let field = |r: Result<Profile, SpecError>| match r {
            Err(SpecError::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(field(profile(&sc(None, "bogus"), true)), DEPRECATED);
        assert_eq!(field(profile(&sc(None, "localhost/"), true)), DEPRECATED);
        assert_eq!(
            field(profile(&sc(Some((ProfileType::Localhost, "")), ""), true)),
            STRUCTURED_REF
        );
        assert_eq!(
            field(profile(
                &sc(Some((ProfileType::Localhost, "a\nb")), ""),
                true
            )),
            STRUCTURED_REF
        );
        let mut unknown = sc(None, "");
        unknown.apparmor = Some(cri::SecurityProfile {
            profile_type: 7,
            localhost_ref: String::new(),
        });
        assert_eq!(field(profile(&unknown, true)), STRUCTURED_TYPE);
    }

    #[test]
    fn without_apparmor_default_means_none_and_localhost_is_refused() {
        assert_eq!(profile(&sc(None, ""), false), Ok(Profile::None));
        let rd = profile(&sc(Some((ProfileType::RuntimeDefault, "")), ""), false);
        assert_eq!(rd, Ok(Profile::None));
        assert_eq!(
            profile(&sc(None, "runtime/default"), false),
            Ok(Profile::None)
        );
        let un = profile(&sc(Some((ProfileType::Unconfined, "")), ""), false);
        assert_eq!(un, Ok(Profile::None));
        match profile(&sc(Some((ProfileType::Localhost, "k8s-x")), ""), false) {
            Err(SpecError::Invalid { field, reason }) => {
                assert_eq!(field, STRUCTURED_REF);
                assert!(reason.contains("`k8s-x`"), "{reason}");
                assert!(reason.contains("does not enforce AppArmor"), "{reason}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let deprecated = profile(&sc(None, "localhost/k8s-y"), false);
        assert!(
            matches!(&deprecated, Err(SpecError::Invalid { field, .. }) if *field == DEPRECATED),
            "{deprecated:?}"
        );
    }

    #[test]
    fn oci_names() {
        assert_eq!(Profile::None.oci_name(), "");
        assert_eq!(Profile::Default.oci_name(), "crid-default");
        assert_eq!(localhost("k8s-x", STRUCTURED_REF).oci_name(), "k8s-x");
    }

    #[test]
    fn the_default_profile_names_itself_and_denies_what_reaches_outside() {
        let text = default_profile_text();
        assert!(text.contains("profile crid-default flags=(attach_disconnected"));
        for rule in [
            "deny mount,",
            "deny /proc/sysrq-trigger rwklx,",
            "deny /sys/[^f]** wklx,",
            "ptrace (trace,read,tracedby,readby) peer=crid-default,",
        ] {
            assert!(text.contains(rule), "missing {rule}");
        }
        // One profile block, braces balanced, and no include the host might lack.
        assert_eq!(text.matches('{').count(), text.matches('}').count());
        assert!(!text.contains("#include") && !text.contains("include <"));
    }
}
