//! The site kit's test PKI (tests/site.rs, tests/netns.rs).

use std::fs;
use std::path::Path;
use std::process::Command;

/// A test PKI as the generated configs expect it under /etc/pki/pugmark/: the site CA, the
/// collector's certificate (names `pugmark.example.org`, `localhost`, 127.0.0.1, and the
/// addresses the namespace test uses), a hypervisor's (`host`, SAN hv01.example.org) and a
/// VM's.
pub fn make_pki(openssl: &Path, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(openssl)
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=site-ca",
    ]);
    for (n, cn, san) in [
        (
            "server",
            "pugmark.example.org",
            "DNS:pugmark.example.org,DNS:localhost,IP:127.0.0.1,IP:10.231.0.1",
        ),
        ("host", "hv01.example.org", "DNS:hv01.example.org"),
        ("hv01", "hv01.example.org", "DNS:hv01.example.org"),
        ("vm", "vm.example.org", "DNS:vm.example.org"),
    ] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{n}.key"),
            "-out",
            &format!("{n}.csr"),
            "-subj",
            &format!("/CN={cn}/O=Site"),
        ]);
        fs::write(
            dir.join(format!("{n}.ext")),
            format!(
                "subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n"
            ),
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{n}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{n}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{n}.ext"),
        ]);
    }
}
