//! The container's process: argv, environment, working directory, user and groups.
//!
//! argv follows the Docker rules the kubelet relies on: a CRI `command` replaces the image's
//! entrypoint (and then the image's cmd is dropped); CRI `args` replace the image's cmd.

use super::SpecError;

/// The default `PATH` when neither the image nor the container sets one.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the image's config contributes to the process (oci-image:config.md#properties).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageProcess {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, `KEY=value`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: String,
    /// `User`: `user`, `uid`, `user:group`, `uid:gid` and mixes.
    pub user: String,
}

/// The argv: CRI command and args merged over the image's entrypoint and cmd.
pub fn argv(
    command: &[String],
    args: &[String],
    image: &ImageProcess,
) -> Result<Vec<String>, SpecError> {
    let argv: Vec<String> = if !command.is_empty() {
        command.iter().chain(args).cloned().collect()
    } else {
        let cmd = if args.is_empty() { &image.cmd } else { args };
        image.entrypoint.iter().chain(cmd).cloned().collect()
    };
    if argv.is_empty() {
        return Err(SpecError::Invalid {
            field: "config.command",
            reason: "no command: neither the container config nor the image gives one".into(),
        });
    }
    Ok(argv)
}

/// The environment: the image's, overridden key by key by the container's, plus PATH and HOME
/// when neither sets them. Order is kept stable (image order, then new keys).
pub fn env(image: &[String], container: &[(String, String)], home: &str) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: &str| match out.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_owned(),
        None => out.push((key.to_owned(), value.to_owned())),
    };
    for kv in image {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k, v);
    }
    for (k, v) in container {
        set(k, v);
    }
    let mut env: Vec<String> = out.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !out.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    if !out.iter().any(|(k, _)| k == "HOME") {
        env.push(format!("HOME={home}"));
    }
    env
}

/// The working directory: the container's, else the image's, else `/`.
pub fn cwd(container: &str, image: &str) -> Result<String, SpecError> {
    let dir = if !container.is_empty() {
        container
    } else if !image.is_empty() {
        image
    } else {
        "/"
    };
    if !dir.starts_with('/') {
        return Err(SpecError::Invalid {
            field: "config.working_dir",
            reason: format!("`{dir}` is not an absolute path"),
        });
    }
    Ok(dir.to_owned())
}

/// `/etc/passwd` and `/etc/group` of the container's root filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDb {
    users: Vec<PasswdEntry>,
    groups: Vec<GroupEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

impl UserDb {
    /// Parses the two files' contents; malformed lines are ignored, as libc does.
    pub fn parse(passwd: &str, group: &str) -> Self {
        let users = passwd
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 7).then_some(())?;
                Some(PasswdEntry {
                    name: f[0].to_owned(),
                    uid: f[2].parse().ok()?,
                    gid: f[3].parse().ok()?,
                    home: f[5].to_owned(),
                })
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 4).then_some(())?;
                Some(GroupEntry {
                    name: f[0].to_owned(),
                    gid: f[2].parse().ok()?,
                    members: f[3]
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned)
                        .collect(),
                })
            })
            .collect();
        Self { users, groups }
    }

    fn user_by_name(&self, name: &str) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.name == name)
    }

    fn user_by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.uid == uid)
    }

    fn group_gid(&self, name: &str) -> Option<u32> {
        self.groups.iter().find(|g| g.name == name).map(|g| g.gid)
    }

    fn memberships<'a>(&'a self, user: &'a str) -> impl Iterator<Item = u32> + 'a {
        self.groups
            .iter()
            .filter(move |g| g.members.iter().any(|m| m == user))
            .map(|g| g.gid)
    }
}

/// What the CRI security context says about the user (cri:LinuxContainerSecurityContext).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRequest {
    /// `run_as_user`.
    pub run_as_user: Option<i64>,
    /// `run_as_username`.
    pub run_as_username: String,
    /// `run_as_group`.
    pub run_as_group: Option<i64>,
    /// `supplemental_groups`.
    pub supplemental_groups: Vec<i64>,
    /// `supplemental_groups_policy` Strict: ignore /etc/group memberships.
    pub strict_groups: bool,
}

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary gids: primary, /etc/group memberships, then the requested ones.
    pub additional_gids: Vec<u32>,
    /// Home directory from /etc/passwd, `/` when unknown.
    pub home: String,
}

fn id_field(field: &'static str, v: i64) -> Result<u32, SpecError> {
    u32::try_from(v).map_err(|_| SpecError::Invalid {
        field,
        reason: format!("{v} is not a valid id (0 to 4294967295)"),
    })
}

/// Resolves who the process runs as, against the rootfs's user database.
///
/// Precedence: `run_as_user`, then `run_as_username`, then the image's `User`. `run_as_group`
/// overrides the primary group and is only valid together with a user (cri:api.proto says
/// the runtime must fail otherwise).
pub fn resolve_user(
    req: &UserRequest,
    image_user: &str,
    db: &UserDb,
) -> Result<ResolvedUser, SpecError> {
    if req.run_as_group.is_some() && req.run_as_user.is_none() && req.run_as_username.is_empty() {
        return Err(SpecError::Invalid {
            field: "config.linux.security_context.run_as_group",
            reason: "run_as_group needs run_as_user or run_as_username".into(),
        });
    }
    let (user_part, group_part) = if let Some(uid) = req.run_as_user {
        (
            UserRef::Id(id_field("config.linux.security_context.run_as_user", uid)?),
            None,
        )
    } else if !req.run_as_username.is_empty() {
        (UserRef::Name(req.run_as_username.clone()), None)
    } else {
        let (u, g) = image_user
            .split_once(':')
            .map_or((image_user, None), |(u, g)| (u, Some(g)));
        let user = match u {
            "" => UserRef::Id(0),
            u => u
                .parse()
                .map_or_else(|_| UserRef::Name(u.to_owned()), UserRef::Id),
        };
        (user, g.filter(|g| !g.is_empty()))
    };

    let (uid, mut gid, name, home) = match &user_part {
        UserRef::Id(uid) => match db.user_by_uid(*uid) {
            Some(e) => (*uid, e.gid, Some(e.name.clone()), e.home.clone()),
            // A numeric user need not exist in /etc/passwd; its group is then 0.
            None => (*uid, 0, None, "/".to_owned()),
        },
        UserRef::Name(name) => {
            let e = db.user_by_name(name).ok_or_else(|| SpecError::Invalid {
                field: if req.run_as_username.is_empty() {
                    "image.config.User"
                } else {
                    "config.linux.security_context.run_as_username"
                },
                reason: format!("user `{name}` is not in the image's /etc/passwd"),
            })?;
            (e.uid, e.gid, Some(e.name.clone()), e.home.clone())
        }
    };
    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(id) => id,
            Err(_) => db.group_gid(g).ok_or_else(|| SpecError::Invalid {
                field: "image.config.User",
                reason: format!("group `{g}` is not in the image's /etc/group"),
            })?,
        };
    }
    if let Some(g) = req.run_as_group {
        gid = id_field("config.linux.security_context.run_as_group", g)?;
    }

    let mut additional = vec![gid];
    if let (Some(name), false) = (&name, req.strict_groups) {
        additional.extend(db.memberships(name));
    }
    for g in &req.supplemental_groups {
        additional.push(id_field(
            "config.linux.security_context.supplemental_groups",
            *g,
        )?);
    }
    let mut seen = std::collections::HashSet::new();
    additional.retain(|g| seen.insert(*g));
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

enum UserRef {
    Id(u32),
    Name(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\ncrid:x:1000:1000:crid:/home/crid:/bin/sh\nbroken line\n";
    const GROUP: &str =
        "root:x:0:\ncrid:x:1000:\nextra:x:1001:crid\nmore:x:1002:other,crid\nnobody:x:65534:\n";

    fn db() -> UserDb {
        UserDb::parse(PASSWD, GROUP)
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn argv_follows_docker_rules() {
        let image = ImageProcess {
            entrypoint: s(&["/ep"]),
            cmd: s(&["default"]),
            ..Default::default()
        };
        assert_eq!(argv(&[], &[], &image).ok(), Some(s(&["/ep", "default"])));
        assert_eq!(argv(&[], &s(&["x"]), &image).ok(), Some(s(&["/ep", "x"])));
        assert_eq!(
            argv(&s(&["/bin/sh"]), &[], &image).ok(),
            Some(s(&["/bin/sh"])),
            "command drops image cmd"
        );
        assert_eq!(
            argv(&s(&["/bin/sh"]), &s(&["-c", "true"]), &image).ok(),
            Some(s(&["/bin/sh", "-c", "true"]))
        );
        assert!(argv(&[], &[], &ImageProcess::default()).is_err());
    }

    #[test]
    fn env_merges_container_over_image() {
        let e = env(
            &s(&["PATH=/bin", "A=image", "B=keep"]),
            &[("A".into(), "container".into()), ("C".into(), "new".into())],
            "/root",
        );
        assert_eq!(
            e,
            s(&["PATH=/bin", "A=container", "B=keep", "C=new", "HOME=/root"])
        );
        let e = env(&[], &[("HOME".into(), "/h".into())], "/root");
        assert_eq!(e, s(&[DEFAULT_PATH, "HOME=/h"]));
    }

    #[test]
    fn cwd_precedence_and_validation() {
        assert_eq!(cwd("", "").ok().as_deref(), Some("/"));
        assert_eq!(cwd("", "/img").ok().as_deref(), Some("/img"));
        assert_eq!(cwd("/c", "/img").ok().as_deref(), Some("/c"));
        assert!(cwd("rel", "").is_err());
    }

    #[test]
    fn image_user_forms() {
        let r = |u: &str| resolve_user(&UserRequest::default(), u, &db());
        let root = r("").expect("root");
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let by_name = r("crid").expect("crid");
        assert_eq!((by_name.uid, by_name.gid), (1000, 1000));
        assert_eq!(by_name.additional_gids, [1000, 1001, 1002]);
        assert_eq!(
            r("1000:1000").expect("ids").additional_gids,
            [1000, 1001, 1002]
        );
        assert_eq!(r("1000:extra").expect("group name").gid, 1001);
        let unknown_uid = r("4242").expect("numeric need not exist");
        assert_eq!(
            (unknown_uid.uid, unknown_uid.gid, unknown_uid.home.as_str()),
            (4242, 0, "/")
        );
        assert!(r("ghost").is_err());
        assert!(r("crid:ghosts").is_err());
    }

    #[test]
    fn cri_fields_override_the_image() {
        let req = UserRequest {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            supplemental_groups: vec![4000, 1001],
            ..Default::default()
        };
        let u = resolve_user(&req, "root", &db()).expect("resolve");
        assert_eq!((u.uid, u.gid), (1000, 3000));
        assert_eq!(u.additional_gids, [3000, 1001, 1002, 4000]);

        let strict = UserRequest {
            run_as_username: "crid".into(),
            supplemental_groups: vec![4000],
            strict_groups: true,
            ..Default::default()
        };
        assert_eq!(
            resolve_user(&strict, "", &db())
                .expect("strict")
                .additional_gids,
            [1000, 4000]
        );
    }

    #[test]
    fn invalid_user_requests_name_the_field() {
        let group_alone = UserRequest {
            run_as_group: Some(1),
            ..Default::default()
        };
        let err = resolve_user(&group_alone, "", &db()).expect_err("must fail");
        assert!(err.to_string().contains("run_as_group"), "{err}");
        let negative = UserRequest {
            run_as_user: Some(-1),
            ..Default::default()
        };
        assert!(
            resolve_user(&negative, "", &db())
                .expect_err("negative")
                .to_string()
                .contains("run_as_user")
        );
        let missing = UserRequest {
            run_as_username: "ghost".into(),
            ..Default::default()
        };
        assert!(
            resolve_user(&missing, "", &db())
                .expect_err("ghost")
                .to_string()
                .contains("run_as_username")
        );
    }
}
