//! The CNI invoker against Debian's real plugins (/usr/lib/cni: bridge, host-local, portmap).
//! Needs root (network namespaces, bridges, iptables) and containernetworking-plugins.
//!
//! Every test has its own temp dir (configuration, host-local `dataDir`, result cache,
//! pinned namespaces), its own bridge name and its own /24, so tests run in parallel; Drop
//! guards run DEL, unpin the namespaces and delete the bridge even when a test fails.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crid::config::NetworkConfig;
use crid::network::{Attachment, Cni, CniError, PortMapping};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use serde_json::{Value, json};

const PLUGIN_DIR: &str = "/usr/lib/cni";

/// A network namespace pinned by a bind mount of `/proc/thread-self/ns/net`, made by a
/// thread that unshared its network namespace (the process's own is untouched).
struct NetNs {
    path: PathBuf,
    pinned: bool,
}

impl NetNs {
    fn new(path: PathBuf) -> NetNs {
        std::fs::File::create(&path).expect("create netns file");
        let target = path.clone();
        std::thread::spawn(move || -> nix::Result<()> {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        })
        .join()
        .expect("netns thread")
        .expect("unshare and pin a network namespace (needs root)");
        NetNs { path, pinned: true }
    }

    /// Unpins (destroying the namespace once nothing else holds it) and removes the file.
    fn destroy(&mut self) {
        if self.pinned {
            let _ = nix::mount::umount2(&self.path, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&self.path);
            self.pinned = false;
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// Runs `f` on a thread that joined the network namespace at `ns`.
fn in_netns<T: Send + 'static>(
    ns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let file = std::fs::File::open(ns).expect("open netns");
    std::thread::spawn(move || {
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

/// Runs a future to completion on a runtime of its own (for Drop guards).
fn block_on<F>(f: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    })
    .join()
    .expect("block_on thread")
}

/// One test's network: a temp dir with the conflist, host-local's data and the result
/// cache; a bridge of its own, deleted on drop.
struct TestNet {
    dir: tempfile::TempDir,
    name: String,
    bridge: String,
    /// The first three octets of the test's /24.
    prefix: String,
    conflist: Value,
    cni: Cni,
}

impl TestNet {
    /// A network `cnitest-<tag>` on bridge `crt<index>-<pid>` and 10.213.<index>.0/24, with
    /// `chain` after the bridge plugin.
    fn new(tag: &str, index: u8, chain: Vec<Value>) -> TestNet {
        let dir = tempfile::Builder::new()
            .prefix("crid-cni-")
            .tempdir()
            .expect("tempdir");
        let name = format!("cnitest-{tag}");
        let bridge = format!("crt{index}-{}", std::process::id() % 100_000);
        let prefix = format!("10.213.{index}");
        let mut plugins = vec![json!({
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": format!("{prefix}.0/24")}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": dir.path().join("ipam"),
            }
        })];
        plugins.extend(chain);
        let conflist = json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins});
        let net = TestNet {
            cni: Cni::new(
                &NetworkConfig {
                    cni_config_dir: dir.path().join("net.d"),
                    cni_plugin_dirs: vec![dir.path().join("bin"), PathBuf::from(PLUGIN_DIR)],
                    ..Default::default()
                },
                dir.path().join("cni-cache"),
            ),
            dir,
            name,
            bridge,
            prefix,
            conflist,
        };
        std::fs::create_dir_all(net.dir.path().join("bin")).expect("mkdir bin");
        net.write_config();
        net
    }

    fn write_config(&self) {
        let dir = self.dir.path().join("net.d");
        std::fs::create_dir_all(&dir).expect("mkdir net.d");
        std::fs::write(
            dir.join("10-test.conflist"),
            serde_json::to_vec_pretty(&self.conflist).expect("json"),
        )
        .expect("write conflist");
    }

    fn remove_config(&self) {
        std::fs::remove_file(self.dir.path().join("net.d/10-test.conflist")).expect("rm conflist");
    }

    fn netns(&self, name: &str) -> NetNs {
        NetNs::new(self.dir.path().join(format!("netns-{name}")))
    }

    fn attachment(&self, id: &str, ns: &NetNs, ports: Vec<PortMapping>) -> Attachment {
        Attachment {
            container_id: id.to_owned(),
            netns: ns.path.clone(),
            ifname: "eth0".into(),
            pod_namespace: "default".into(),
            pod_name: format!("pod-{id}"),
            pod_uid: format!("uid-{id}"),
            port_mappings: ports,
        }
    }

    /// host-local's leases: files named by address in `<dataDir>/<network>`.
    fn leases(&self) -> Vec<String> {
        list_dir(&self.dir.path().join("ipam").join(&self.name))
            .into_iter()
            .filter(|f| f.parse::<IpAddr>().is_ok())
            .collect()
    }

    /// Interfaces enslaved to the bridge (the host ends of veth pairs).
    fn veths(&self) -> Vec<String> {
        list_dir(&Path::new("/sys/class/net").join(&self.bridge).join("brif"))
    }

    /// Files in the result cache, at any depth.
    fn cache_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.cni.cache_dir(), &mut out);
        out
    }

    fn in_subnet(&self, ip: IpAddr) -> bool {
        ip.to_string().starts_with(&format!("{}.", self.prefix))
    }

    fn assert_clean(&self) {
        assert_eq!(self.leases(), Vec::<String>::new(), "leases left");
        assert_eq!(
            self.veths(),
            Vec::<String>::new(),
            "veths left on the bridge"
        );
        assert_eq!(
            self.cache_files(),
            Vec::<PathBuf>::new(),
            "cache entries left"
        );
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A pod attached to a test network: DEL on drop, then its namespace is unpinned.
struct Pod {
    cni: Cni,
    id: String,
    ns: NetNs,
}

impl Pod {
    async fn setup(net: &TestNet, id: &str, ports: Vec<PortMapping>) -> (Pod, Vec<IpAddr>) {
        let ns = net.netns(id);
        let a = net.attachment(id, &ns, ports);
        let pod = Pod {
            cni: net.cni.clone(),
            id: id.to_owned(),
            ns,
        };
        let result = net.cni.setup(&a).await.expect("CNI ADD");
        assert_eq!(result.network, net.name);
        assert_eq!(result.interface, "eth0");
        (pod, result.ips)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let (cni, id, ns) = (self.cni.clone(), self.id.clone(), self.ns.path.clone());
        if let Err(e) = block_on(async move { cni.teardown(&id, Some(&ns)).await }) {
            eprintln!("teardown of {} in a guard: {e}", self.id);
        }
    }
}

fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn unique_id(tag: &str) -> String {
    format!("{tag}-{}", std::process::id())
}

/// The IPv4 addresses of `ifname` in the namespace.
fn addresses_in(ns: &Path, ifname: &'static str) -> Vec<IpAddr> {
    in_netns(ns, move || {
        nix::ifaddrs::getifaddrs()
            .expect("getifaddrs")
            .filter(|i| i.interface_name == ifname)
            .filter_map(|i| {
                i.address
                    .and_then(|a| a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
            })
            .collect()
    })
    .join()
    .expect("netns thread")
}

/// Serves one connection in the namespace: answers with `reply`. Returns once listening.
fn serve_once(
    ns: &Path,
    addr: SocketAddr,
    reply: &'static str,
) -> std::thread::JoinHandle<std::io::Result<()>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = in_netns(ns, move || {
        let listener = TcpListener::bind(addr);
        let _ = ready_tx.send(listener.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        let (mut conn, _) = listener?.accept()?;
        conn.write_all(reply.as_bytes())
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("listener thread")
        .expect("listen in the netns");
    handle
}

fn read_reply(mut conn: TcpStream) -> String {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut s = String::new();
    conn.read_to_string(&mut s).expect("read");
    s
}

fn bridge_plugin_only() -> Vec<Value> {
    Vec::new()
}

fn portmap() -> Value {
    json!({"type": "portmap", "capabilities": {"portMappings": true}})
}

#[tokio::test]
async fn add_gives_eth0_an_address_and_pods_reach_each_other_needs_root() {
    let net = TestNet::new("add", 1, bridge_plugin_only());
    let (a, a_ips) = Pod::setup(&net, &unique_id("a"), vec![]).await;
    let (b, b_ips) = Pod::setup(&net, &unique_id("b"), vec![]).await;

    for (pod, ips) in [(&a, &a_ips), (&b, &b_ips)] {
        assert_eq!(ips.len(), 1, "{ips:?}");
        assert!(net.in_subnet(ips[0]), "{ips:?} not in {}.0/24", net.prefix);
        assert_ne!(
            ips[0],
            format!("{}.1", net.prefix).parse::<IpAddr>().expect("ip")
        );
        assert_eq!(
            addresses_in(&pod.ns.path, "eth0"),
            *ips,
            "eth0 in the netns"
        );
        let lease = net
            .dir
            .path()
            .join("ipam")
            .join(&net.name)
            .join(ips[0].to_string());
        let owner = std::fs::read_to_string(&lease).expect("host-local lease file");
        assert!(owner.contains(&pod.id), "lease {owner:?} names {}", pod.id);
    }
    assert_ne!(a_ips, b_ips);
    assert_eq!(net.veths().len(), 2);
    assert_eq!(net.cache_files().len(), 2);

    let server = serve_once(&a.ns.path, SocketAddr::new(a_ips[0], 7777), "hello from a");
    let target = SocketAddr::new(a_ips[0], 7777);
    let reply = in_netns(&b.ns.path, move || {
        read_reply(TcpStream::connect_timeout(&target, Duration::from_secs(10)).expect("connect"))
    })
    .join()
    .expect("client thread");
    assert_eq!(reply, "hello from a");
    server.join().expect("server thread").expect("serve");

    drop((a, b));
    net.assert_clean();
}

#[tokio::test]
async fn fifty_add_del_cycles_leave_no_lease_veth_or_cache_needs_root() {
    let net = TestNet::new("cycles", 2, vec![portmap()]);
    let ns = net.netns("cycles");
    for i in 0..50 {
        let id = unique_id(&format!("cycle{i}"));
        let a = net.attachment(&id, &ns, vec![]);
        let pod = net.cni.setup(&a).await.expect("ADD");
        assert!(net.in_subnet(pod.ips[0]), "{:?}", pod.ips);
        net.cni.teardown(&id, Some(&ns.path)).await.expect("DEL");
    }
    net.assert_clean();
    assert!(addresses_in(&ns.path, "eth0").is_empty());
}

#[tokio::test]
async fn failing_plugin_is_named_and_rolled_back_needs_root() {
    // portmap rejects its configuration ("snat" must be a bool) after bridge succeeded.
    let net = TestNet::new(
        "fail",
        3,
        vec![json!({"type": "portmap", "snat": "yes", "capabilities": {"portMappings": true}})],
    );
    let ns = net.netns("fail");
    let id = unique_id("fail");
    let a = net.attachment(&id, &ns, vec![]);
    let err = net.cni.setup(&a).await.expect_err("ADD must fail");
    match &err {
        CniError::Plugin {
            network,
            plugin,
            command,
            msg,
            ..
        } => {
            assert_eq!(network, &net.name);
            assert_eq!(plugin, "portmap");
            assert_eq!(*command, "ADD");
            assert!(msg.contains("failed to parse config"), "{msg}");
        }
        other => panic!("expected a plugin error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("portmap") && text.contains("snat"), "{text}");
    net.assert_clean();
    assert!(
        addresses_in(&ns.path, "eth0").is_empty(),
        "eth0 rolled back"
    );

    // A plugin type no directory has.
    let missing = TestNet::new("missing", 4, vec![json!({"type": "no-such-plugin"})]);
    let ns = missing.netns("missing");
    let id = unique_id("missing");
    let err = missing
        .cni
        .setup(&missing.attachment(&id, &ns, vec![]))
        .await
        .expect_err("ADD must fail");
    assert!(
        matches!(&err, CniError::PluginNotFound { plugin, .. } if plugin == "no-such-plugin"),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-such-plugin"), "{err}");
    missing.assert_clean();
}

#[tokio::test]
async fn del_uses_the_cache_is_idempotent_and_tolerates_a_missing_netns_needs_root() {
    let net = TestNet::new("del", 5, vec![portmap()]);
    let (mut pod, ips) = Pod::setup(&net, &unique_id("del"), vec![]).await;
    assert_eq!(net.leases(), [ips[0].to_string()]);

    // The configuration disappears, and the daemon restarts (a new invoker, same cache).
    net.remove_config();
    let restarted = Cni::new(
        &NetworkConfig {
            cni_config_dir: net.dir.path().join("net.d"),
            cni_plugin_dirs: vec![PathBuf::from(PLUGIN_DIR)],
            ..Default::default()
        },
        net.cni.cache_dir().to_path_buf(),
    );
    restarted
        .teardown(&pod.id, Some(&pod.ns.path))
        .await
        .expect("DEL from the cache");
    net.assert_clean();
    restarted
        .teardown(&pod.id, Some(&pod.ns.path))
        .await
        .expect("second DEL");
    restarted
        .teardown(&pod.id, None)
        .await
        .expect("DEL without netns");

    // With the configuration back: the namespace is gone before DEL.
    net.write_config();
    let id2 = unique_id("gone");
    let (mut pod2, _) = Pod::setup(&net, &id2, vec![]).await;
    pod2.ns.destroy();
    net.cni
        .teardown(&id2, Some(&pod2.ns.path))
        .await
        .expect("DEL with a missing netns");
    assert!(
        net.leases().is_empty(),
        "lease released: {:?}",
        net.leases()
    );
    assert!(net.cache_files().is_empty());
    // The kernel removes the veth pair with the namespace, asynchronously.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !net.veths().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    net.assert_clean();
    // And with no cache entry and a current configuration, DEL has nothing to do.
    net.cni
        .teardown(&id2, Some(&pod2.ns.path))
        .await
        .expect("DEL with nothing to do");
    pod.ns.destroy();
}

#[tokio::test]
async fn hung_plugin_times_out_and_its_processes_are_killed_needs_root() {
    let net = TestNet::new("hang", 6, vec![]);
    let bin = net.dir.path().join("bin");
    let pids = net.dir.path().join("pids");
    let script = format!(
        "#!/bin/sh\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\necho $$ > {0}.sh\nsleep 600 &\necho $! > {0}.sleep\nwait\n",
        pids.display()
    );
    std::fs::write(bin.join("hang"), script).expect("write plugin");
    std::fs::set_permissions(bin.join("hang"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let mut hang = net;
    hang.conflist =
        json!({"cniVersion": "1.0.0", "name": hang.name, "plugins": [{"type": "hang"}]});
    hang.write_config();
    let cni = hang.cni.clone().with_timeout(Duration::from_secs(1));
    let ns = hang.netns("hang");
    let id = unique_id("hang");

    let started = Instant::now();
    let err = cni
        .setup(&hang.attachment(&id, &ns, vec![]))
        .await
        .expect_err("ADD must time out");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(&err, CniError::Timeout { plugin, command, timeout, .. }
            if plugin == "hang" && *command == "ADD" && *timeout == Duration::from_secs(1)),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("hang") && text.contains("timed out"),
        "{text}"
    );

    for which in ["sh", "sleep"] {
        let pid = std::fs::read_to_string(pids.with_extension(which)).expect("pid file");
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        // Gone, or a zombie of an init that has not reaped the orphan yet: never running.
        if let Ok(stat) = stat {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            if which == "sh" {
                panic!("the plugin process {pid} was not reaped: {stat}");
            }
            assert_eq!(state, Some("Z"), "{which} {pid} still alive: {stat}");
        }
    }
    assert!(hang.cache_files().is_empty());
}

#[tokio::test]
async fn portmap_host_port_reaches_the_pod_and_rules_go_with_del_needs_root() {
    let net = TestNet::new("portmap", 7, vec![portmap()]);
    let host_port = 39_000 + u16::try_from(std::process::id() % 500).expect("small");
    let id = unique_id("pm");
    let (pod, ips) = Pod::setup(
        &net,
        &id,
        vec![PortMapping {
            host_port,
            container_port: 8080,
            protocol: "tcp".into(),
            host_ip: String::new(),
        }],
    )
    .await;
    assert_eq!(ips.len(), 1);

    let rules = iptables_save();
    let ours: Vec<&str> = rules.lines().filter(|l| l.contains(&id)).collect();
    assert!(!ours.is_empty(), "no portmap rule names {id}:\n{rules}");
    let chains: Vec<String> = ours
        .iter()
        .flat_map(|l| l.split_whitespace())
        .filter(|w| w.starts_with("CNI-DN-") || w.starts_with("CNI-SN-"))
        .map(str::to_owned)
        .collect();
    assert!(!chains.is_empty(), "{ours:?}");

    let server = serve_once(
        &pod.ns.path,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080),
        "hello through portmap",
    );
    let conn = TcpStream::connect_timeout(
        &SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), host_port),
        Duration::from_secs(10),
    )
    .expect("connect to 127.0.0.1:hostPort");
    assert_eq!(read_reply(conn), "hello through portmap");
    server.join().expect("server thread").expect("serve");

    net.cni
        .teardown(&id, Some(&pod.ns.path))
        .await
        .expect("DEL");
    let rules = iptables_save();
    assert!(!rules.contains(&id), "rules naming {id} left:\n{rules}");
    for chain in &chains {
        assert!(
            !rules.contains(chain.as_str()),
            "chain {chain} left:\n{rules}"
        );
    }
    drop(pod);
    net.assert_clean();
}

fn iptables_save() -> String {
    let out = std::process::Command::new("iptables-save")
        .output()
        .expect("iptables-save");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn version_lists_what_the_plugins_support() {
    let net = TestNet::new("version", 8, vec![]);
    let versions = net.cni.version("bridge").await.expect("VERSION");
    assert!(versions.iter().any(|v| v == "1.0.0"), "{versions:?}");
    assert!(versions.iter().any(|v| v == "0.4.0"), "{versions:?}");
    let err = net
        .cni
        .version("no-such-plugin")
        .await
        .expect_err("missing");
    assert!(matches!(err, CniError::PluginNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn check_passes_after_add_and_names_the_plugin_when_eth0_is_gone_needs_root() {
    let net = TestNet::new("check", 9, vec![portmap()]);
    let id = unique_id("check");
    let early = net.netns("early");
    let err = net
        .cni
        .check(&net.attachment(&id, &early, vec![]))
        .await
        .expect_err("nothing cached before ADD");
    assert!(
        matches!(&err, CniError::NoCachedResult { container_id, .. } if *container_id == id),
        "{err:?}"
    );

    let (pod, _) = Pod::setup(&net, &id, vec![]).await;
    let a = net.attachment(&id, &pod.ns, vec![]);
    net.cni.check(&a).await.expect("CHECK after ADD");

    // eth0 disappears behind the plugins' back (a child forked on a thread in the netns).
    let status = in_netns(&pod.ns.path, || {
        std::process::Command::new("ip")
            .args(["link", "del", "eth0"])
            .status()
    })
    .join()
    .expect("netns thread")
    .expect("run ip");
    assert!(status.success());
    let err = net.cni.check(&a).await.expect_err("CHECK must fail");
    assert!(
        matches!(&err, CniError::Plugin { plugin, command, .. } if plugin == "bridge" && *command == "CHECK"),
        "{err:?}"
    );
    drop(pod);
    net.assert_clean();
}

#[tokio::test]
async fn the_default_conflist_of_setup_works_with_the_installed_plugins_needs_root() {
    let mut net = TestNet::new("fixture", 10, vec![]);
    let mut conflist: Value =
        serde_json::from_str(include_str!("../fixtures/cni/10-crid-bridge.conflist"))
            .expect("fixture conflist");
    // Only what must be unique per test changes: name, bridge, subnet, lease directory.
    conflist["name"] = json!(net.name);
    conflist["plugins"][0]["bridge"] = json!(net.bridge);
    conflist["plugins"][0]["ipam"]["ranges"] =
        json!([[{"subnet": format!("{}.0/24", net.prefix)}]]);
    conflist["plugins"][0]["ipam"]["dataDir"] = json!(net.dir.path().join("ipam"));
    net.conflist = conflist;
    net.write_config();

    let host_port = 39_500 + u16::try_from(std::process::id() % 400).expect("small");
    let ports = vec![PortMapping {
        host_port,
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: String::new(),
    }];
    let (pod, ips) = Pod::setup(&net, &unique_id("fixture"), ports).await;
    assert_eq!(ips.len(), 1);
    assert!(net.in_subnet(ips[0]), "{ips:?}");
    assert_eq!(addresses_in(&pod.ns.path, "eth0"), ips);
    drop(pod);
    net.assert_clean();
    assert!(!iptables_save().contains(&unique_id("fixture")));
}

/// Writes a plugin `name` into the test's bin dir that records its environment and stdin as
/// `<rec>/<n>.env` and `<rec>/<n>.stdin` (n counts invocations) and, on ADD, answers with
/// the address 10.9.9.`octet` on the pod's interface.
fn recording_plugin(net: &TestNet, name: &str, octet: u8) -> PathBuf {
    let rec = net.dir.path().join("rec");
    std::fs::create_dir_all(&rec).expect("mkdir rec");
    let script = format!(
        r#"#!/bin/sh
d={rec}
n=$(cat "$d/count" 2>/dev/null || echo 0)
echo $((n + 1)) > "$d/count"
{{ echo "PLUGIN={name}"; env | grep '^CNI_' | sort; }} > "$d/$n.env"
cat > "$d/$n.stdin"
if [ "$CNI_COMMAND" = ADD ]; then
  printf '{{"cniVersion":"1.0.0","interfaces":[{{"name":"%s","sandbox":"%s"}}],"ips":[{{"address":"10.9.9.{octet}/24","interface":0}}]}}' "$CNI_IFNAME" "$CNI_NETNS"
fi
"#,
        rec = rec.display()
    );
    let path = net.dir.path().join("bin").join(name);
    std::fs::write(&path, script).expect("write plugin");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    rec
}

fn recorded(rec: &Path, n: usize) -> (Vec<String>, Value) {
    let env = std::fs::read_to_string(rec.join(format!("{n}.env"))).expect("env record");
    let stdin = std::fs::read(rec.join(format!("{n}.stdin"))).expect("stdin record");
    (
        env.lines().map(str::to_owned).collect(),
        serde_json::from_slice(&stdin).expect("stdin is JSON"),
    )
}

#[tokio::test]
async fn plugins_get_the_cni_environment_and_chained_configuration_needs_root() {
    let mut net = TestNet::new("env", 11, vec![]);
    let rec = recording_plugin(&net, "rec-one", 1);
    recording_plugin(&net, "rec-two", 2);
    net.conflist = json!({"cniVersion": "1.0.0", "name": net.name, "plugins": [
        {"type": "rec-one", "name": "overridden", "custom": 1},
        {"type": "rec-two", "capabilities": {"portMappings": true}}
    ]});
    net.write_config();
    let ns = net.netns("env");
    let id = unique_id("env");
    let port = PortMapping {
        host_port: 8080,
        container_port: 80,
        protocol: "TCP".into(),
        host_ip: String::new(),
    };
    let a = net.attachment(&id, &ns, vec![port]);
    let pod = net.cni.setup(&a).await.expect("ADD");
    assert_eq!(pod.ips, ["10.9.9.2".parse::<IpAddr>().expect("ip")]);
    net.cni.teardown(&id, Some(&ns.path)).await.expect("DEL");

    let cni_path = format!(
        "CNI_PATH={}:{PLUGIN_DIR}",
        net.dir.path().join("bin").display()
    );
    let args = format!(
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-{id};\
         K8S_POD_INFRA_CONTAINER_ID={id};K8S_POD_UID=uid-{id}"
    );
    let mappings = json!({"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    let (_, first_result) = recorded(&rec, 1);
    let first_result = first_result["prevResult"].clone();

    // ADD in chain order, DEL in reverse.
    let expected = [
        ("rec-one", "ADD", ns.path.display().to_string()),
        ("rec-two", "ADD", ns.path.display().to_string()),
        ("rec-two", "DEL", ns.path.display().to_string()),
        ("rec-one", "DEL", ns.path.display().to_string()),
    ];
    for (n, (plugin, command, netns)) in expected.iter().enumerate() {
        let (env, stdin) = recorded(&rec, n);
        let want_env = vec![
            format!("PLUGIN={plugin}"),
            args.clone(),
            format!("CNI_COMMAND={command}"),
            format!("CNI_CONTAINERID={id}"),
            "CNI_IFNAME=eth0".to_owned(),
            format!("CNI_NETNS={netns}"),
            cni_path.clone(),
        ];
        assert_eq!(env, want_env, "invocation {n}");
        assert_eq!(stdin["name"], json!(net.name), "invocation {n}: {stdin}");
        assert_eq!(stdin["cniVersion"], "1.0.0", "invocation {n}");
        assert_eq!(stdin["type"], json!(plugin), "invocation {n}");
        let runtime_config = (*plugin == "rec-two").then(|| mappings.clone());
        assert_eq!(
            stdin.get("runtimeConfig"),
            runtime_config.as_ref(),
            "invocation {n}: only a declared capability is passed"
        );
    }
    let stdin = |n| recorded(&rec, n).1;
    assert_eq!(stdin(0)["custom"], 1);
    assert!(
        stdin(0).get("prevResult").is_none(),
        "the first ADD has none"
    );
    // The second ADD gets the first's result; both DELs get the final (cached) result.
    assert_eq!(first_result["ips"][0]["address"], "10.9.9.1/24");
    let final_result = stdin(2)["prevResult"].clone();
    assert_eq!(final_result["ips"][0]["address"], "10.9.9.2/24");
    assert_eq!(stdin(3)["prevResult"], final_result);
    assert!(!rec.join("4.env").exists(), "four invocations, no more");
    assert!(net.cache_files().is_empty());
}

#[tokio::test]
async fn a_dropped_setup_completes_and_a_del_behind_it_waits_needs_root() {
    let mut net = TestNet::new("dropped", 12, vec![]);
    let log = net.dir.path().join("slow.log");
    let slow = net.dir.path().join("bin/slow");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\ncat >/dev/null\necho $CNI_COMMAND >> {}\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\n\
             sleep 1\necho '{{\"cniVersion\":\"1.0.0\",\"ips\":[{{\"address\":\"10.9.8.7/24\"}}]}}'\n",
            log.display()
        ),
    )
    .expect("write plugin");
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    net.conflist = json!({"cniVersion": "1.0.0", "name": net.name, "plugins": [{"type": "slow"}]});
    net.write_config();
    let ns = net.netns("dropped");
    let id = unique_id("dropped");
    let a = net.attachment(&id, &ns, vec![]);

    // The caller gives up after 100 ms; the ADD goes on. A DEL right behind it waits for the
    // ADD, then removes what it made (from the cache).
    let cancelled = tokio::time::timeout(Duration::from_millis(100), net.cni.setup(&a)).await;
    assert!(cancelled.is_err(), "setup should still be running");
    net.cni.teardown(&id, Some(&ns.path)).await.expect("DEL");
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "ADD\nDEL\n",
        "the ADD finished before the DEL ran"
    );
    assert!(net.cache_files().is_empty(), "{:?}", net.cache_files());
}
