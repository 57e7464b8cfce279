//! `nslookup` and `getent hosts`: a name resolved as a container's C library resolves it,
//! from its `/etc/hosts`, then its `/etc/resolv.conf` (the search domains the kubelet wrote,
//! `ndots`), asking the cluster DNS the runtime hands the shell ([`Resolve`]) for each fully
//! qualified name in turn. `nslookup` writes busybox 1.28's output (the image of
//! kubernetes.io's init container example, whose `until nslookup myservice` waits until the
//! Service exists).

use super::fs::Fs;

/// What the cluster DNS answers a fully qualified name: its addresses, none for NXDOMAIN.
pub type Resolve = fn(&str) -> Vec<String>;

/// A network without DNS: no name resolves.
pub fn nowhere(_: &str) -> Vec<String> {
    Vec::new()
}

/// The longest name DNS allows.
const MAX_NAME: usize = 253;

/// What a container's `/etc/resolv.conf` says; a missing file is the C library's defaults.
struct ResolvConf {
    nameserver: String,
    search: Vec<String>,
    ndots: usize,
}

fn resolv_conf(fs: &Fs) -> ResolvConf {
    let mut conf = ResolvConf { nameserver: "127.0.0.1".into(), search: Vec::new(), ndots: 1 };
    let text = fs.read("/etc/resolv.conf").map(String::from_utf8_lossy).unwrap_or_default();
    let mut nameserver = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => nameserver = nameserver.or(words.next().map(str::to_string)),
            Some("search" | "domain") => conf.search = words.take(6).map(str::to_string).collect(),
            Some("options") => {
                if let Some(n) = words.filter_map(|o| o.strip_prefix("ndots:")).filter_map(|n| n.parse::<usize>().ok()).next_back() {
                    conf.ndots = n.min(15);
                }
            }
            _ => {}
        }
    }
    if let Some(server) = nameserver {
        conf.nameserver = server;
    }
    conf
}

/// The addresses `name` has in the container's `/etc/hosts`.
fn in_hosts_file(fs: &Fs, name: &str) -> Vec<String> {
    let text = fs.read("/etc/hosts").map(String::from_utf8_lossy).unwrap_or_default();
    text.lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let address = words.next()?;
            words.any(|n| n.eq_ignore_ascii_case(name)).then(|| address.to_string())
        })
        .collect()
}

/// The fully qualified names a resolver asks for `name`, in its order: a name with a root
/// dot as it is; one with at least `ndots` dots as it is first, then with each search
/// domain; any other with each search domain first.
fn candidates(name: &str, conf: &ResolvConf) -> Vec<String> {
    if let Some(absolute) = name.strip_suffix('.') {
        return vec![absolute.to_string()];
    }
    let searched = conf.search.iter().map(|domain| format!("{name}.{domain}"));
    if name.matches('.').count() >= conf.ndots {
        std::iter::once(name.to_string()).chain(searched).collect()
    } else {
        searched.chain(std::iter::once(name.to_string())).collect()
    }
}

/// The name that answered for `name` and its addresses: an address as itself, then the
/// hosts file, then the cluster DNS; `None` when nothing knows it.
fn lookup(fs: &Fs, name: &str, resolve: Resolve) -> Option<(String, Vec<String>)> {
    if name.is_empty() || name.len() > MAX_NAME {
        return None;
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Some((name.to_string(), vec![name.to_string()]));
    }
    let local = in_hosts_file(fs, name.trim_end_matches('.'));
    if !local.is_empty() {
        return Some((name.trim_end_matches('.').to_string(), local));
    }
    candidates(name, &resolv_conf(fs)).into_iter().filter(|fqdn| fqdn.len() <= MAX_NAME).find_map(|fqdn| {
        let addresses = resolve(&fqdn);
        (!addresses.is_empty()).then_some((fqdn, addresses))
    })
}

/// `nslookup NAME`, as busybox 1.28 writes it: the server, then the name and its addresses
/// (status 0), or `can't resolve` (status 1).
pub fn nslookup(args: &[String], fs: &Fs, resolve: Resolve, out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
    let Some(name) = args.iter().find(|a| !a.starts_with('-')) else {
        err.extend_from_slice(b"BusyBox v1.28.4 multi-call binary.\n\nUsage: nslookup [HOST] [SERVER]\n");
        return 1;
    };
    let server = args.iter().filter(|a| !a.starts_with('-')).nth(1).cloned().unwrap_or_else(|| resolv_conf(fs).nameserver);
    out.extend_from_slice(format!("Server:    {server}\nAddress 1: {server}\n\n").as_bytes());
    match lookup(fs, name, resolve) {
        Some((fqdn, addresses)) => {
            out.extend_from_slice(format!("Name:      {name}\n").as_bytes());
            for (i, address) in addresses.iter().enumerate() {
                out.extend_from_slice(format!("Address {}: {address} {fqdn}\n", i + 1).as_bytes());
            }
            0
        }
        None => {
            err.extend_from_slice(format!("nslookup: can't resolve '{name}'\n").as_bytes());
            1
        }
    }
}

/// `getent hosts NAME…`, as glibc's writes it: one line per address (status 0), status 2
/// when a name is not found.
pub fn getent(args: &[String], fs: &Fs, resolve: Resolve, out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
    let Some((database, keys)) = args.split_first() else {
        err.extend_from_slice(b"getent: wrong number of arguments\n");
        return 1;
    };
    if database != "hosts" && database != "ahosts" {
        err.extend_from_slice(format!("Unknown database: {database}\n").as_bytes());
        return 1;
    }
    let mut status = 0;
    for key in keys {
        match lookup(fs, key, resolve) {
            Some((fqdn, addresses)) => {
                for address in addresses {
                    out.extend_from_slice(format!("{address:<15} {fqdn}\n").as_bytes());
                }
            }
            None => status = 2,
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster with Service `myservice` in namespace `shop`.
    fn shop(fqdn: &str) -> Vec<String> {
        match fqdn {
            "myservice.shop.svc.cluster.local" => vec!["10.96.7.9".into()],
            "kubernetes.default.svc.cluster.local" => vec!["10.96.0.1".into()],
            _ => Vec::new(),
        }
    }

    fn pod_files() -> Fs {
        let mut fs = Fs::new();
        fs.put("/etc/resolv.conf", b"search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n", 0o644);
        fs.put("/etc/hosts", b"127.0.0.1\tlocalhost\n10.244.1.7\tweb-0\n", 0o644);
        fs
    }

    type Applet = fn(&[String], &Fs, Resolve, &mut Vec<u8>, &mut Vec<u8>) -> i32;

    fn run(applet: Applet, line: &str, resolve: Resolve) -> (i32, String, String) {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = applet(&args, &pod_files(), resolve, &mut out, &mut err);
        (code, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
    }

    #[test]
    fn nslookup_finds_a_service_through_the_search_domains_as_busybox_prints_it() {
        let (code, out, err) = run(nslookup, "myservice", shop);
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(out, "Server:    10.96.0.10\nAddress 1: 10.96.0.10\n\nName:      myservice\nAddress 1: 10.96.7.9 myservice.shop.svc.cluster.local\n");
        let (code, out, _) = run(nslookup, "kubernetes.default", shop);
        assert_eq!(code, 0);
        assert!(out.ends_with("Address 1: 10.96.0.1 kubernetes.default.svc.cluster.local\n"), "{out}");
        let (code, _, _) = run(nslookup, "myservice.shop.svc.cluster.local", shop);
        assert_eq!(code, 0, "a fully qualified name with fewer than ndots dots still gets there, last");
    }

    #[test]
    fn nslookup_of_an_unknown_name_fails_and_without_dns_nothing_resolves() {
        let (code, out, err) = run(nslookup, "myservice", nowhere);
        assert_eq!((code, out.as_str()), (1, "Server:    10.96.0.10\nAddress 1: 10.96.0.10\n\n"));
        assert_eq!(err, "nslookup: can't resolve 'myservice'\n");
        assert_eq!(run(nslookup, "mydb", shop).0, 1);
        assert_eq!(run(nslookup, &"a.".repeat(200), shop).0, 1, "a name longer than DNS allows");
        assert_eq!(run(nslookup, "", shop).0, 1);
    }

    #[test]
    fn getent_reads_the_hosts_file_first_then_asks_the_cluster() {
        assert_eq!(run(getent, "hosts web-0", nowhere), (0, "10.244.1.7      web-0\n".into(), String::new()));
        assert_eq!(run(getent, "hosts myservice", shop), (0, "10.96.7.9       myservice.shop.svc.cluster.local\n".into(), String::new()));
        assert_eq!(run(getent, "hosts mydb", shop).0, 2);
        assert_eq!(run(getent, "hosts 10.1.2.3", nowhere).1, "10.1.2.3        10.1.2.3\n");
        assert_eq!(run(getent, "networks x", shop), (1, String::new(), "Unknown database: networks\n".into()));
    }

    #[test]
    fn a_name_with_ndots_dots_is_asked_as_it_is_first_and_a_root_dot_only_so() {
        let conf = ResolvConf { nameserver: String::new(), search: vec!["a.svc".into(), "svc".into()], ndots: 2 };
        assert_eq!(candidates("x.y.z", &conf), ["x.y.z", "x.y.z.a.svc", "x.y.z.svc"]);
        assert_eq!(candidates("x", &conf), ["x.a.svc", "x.svc", "x"]);
        assert_eq!(candidates("x.y.", &conf), ["x.y"]);
    }
}
