//! Build script. Without the `bindgen` feature it does nothing native: netmap-rs needs no
//! header, no C library and no libclang. With `bindgen`, it generates bindings from the
//! installed `net/netmap.h` and emits compile-time assertions that every hand-written struct in
//! `src/abi.rs` has the header's size, alignment and field offsets.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(netmap_bindgen_check)");
    // `netmap_kernel`: the kernel module backend is built (feature `sys`, on an OS netmap
    // runs on). One name for the condition instead of spelling it out at every use.
    println!("cargo::rustc-check-cfg=cfg(netmap_kernel)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if std::env::var_os("CARGO_FEATURE_SYS").is_some() && (os == "linux" || os == "freebsd") {
        println!("cargo::rustc-cfg=netmap_kernel");
    }
    #[cfg(feature = "bindgen")]
    bindgen_check::run();
}

#[cfg(feature = "bindgen")]
mod bindgen_check {
    use std::path::PathBuf;

    /// (C struct, Rust struct, fields compared by offset)
    const CHECKS: &[(&str, &str, &[&str])] = &[
        (
            "netmap_slot",
            "NetmapSlot",
            &["buf_idx", "len", "flags", "ptr"],
        ),
        (
            "netmap_ring",
            "NetmapRing",
            &[
                "buf_ofs",
                "num_slots",
                "nr_buf_size",
                "ringid",
                "dir",
                "head",
                "cur",
                "tail",
                "flags",
                "ts",
                "offset_mask",
                "buf_align",
                "sem",
            ],
        ),
        (
            "netmap_if",
            "NetmapIf",
            &[
                "ni_name",
                "ni_version",
                "ni_flags",
                "ni_tx_rings",
                "ni_rx_rings",
                "ni_bufs_head",
                "ni_host_tx_rings",
                "ni_host_rx_rings",
                "ring_ofs",
            ],
        ),
        (
            "nmreq_header",
            "NmreqHeader",
            &[
                "nr_version",
                "nr_reqtype",
                "nr_reserved",
                "nr_name",
                "nr_options",
                "nr_body",
            ],
        ),
        (
            "nmreq_option",
            "NmreqOption",
            &["nro_next", "nro_reqtype", "nro_status", "nro_size"],
        ),
        (
            "nmreq_register",
            "NmreqRegister",
            &[
                "nr_offset",
                "nr_memsize",
                "nr_tx_slots",
                "nr_rx_slots",
                "nr_tx_rings",
                "nr_rx_rings",
                "nr_host_tx_rings",
                "nr_host_rx_rings",
                "nr_mem_id",
                "nr_ringid",
                "nr_mode",
                "nr_extra_bufs",
                "nr_flags",
            ],
        ),
        (
            "nmreq_port_info_get",
            "NmreqPortInfoGet",
            &[
                "nr_memsize",
                "nr_tx_slots",
                "nr_rx_slots",
                "nr_tx_rings",
                "nr_rx_rings",
                "nr_host_tx_rings",
                "nr_host_rx_rings",
                "nr_mem_id",
            ],
        ),
        (
            "nmreq_vale_attach",
            "NmreqValeAttach",
            &["reg", "port_index"],
        ),
        ("nmreq_vale_detach", "NmreqValeDetach", &["port_index"]),
        (
            "nmreq_vale_list",
            "NmreqValeList",
            &["nr_bridge_idx", "nr_port_idx"],
        ),
        (
            "nmreq_vale_newif",
            "NmreqValeNewif",
            &[
                "nr_tx_slots",
                "nr_rx_slots",
                "nr_tx_rings",
                "nr_rx_rings",
                "nr_mem_id",
            ],
        ),
        (
            "nmreq_pools_info",
            "NmreqPoolsInfo",
            &[
                "nr_memsize",
                "nr_mem_id",
                "nr_if_pool_offset",
                "nr_if_pool_objtotal",
                "nr_if_pool_objsize",
                "nr_ring_pool_offset",
                "nr_ring_pool_objtotal",
                "nr_ring_pool_objsize",
                "nr_buf_pool_offset",
                "nr_buf_pool_objtotal",
                "nr_buf_pool_objsize",
            ],
        ),
    ];

    fn find_header() -> Option<PathBuf> {
        println!("cargo::rerun-if-env-changed=NETMAP_LOCATION");
        let mut roots: Vec<PathBuf> = Vec::new();
        if let Ok(loc) = std::env::var("NETMAP_LOCATION") {
            let root = PathBuf::from(loc);
            // An explicit location that holds no header is a mistake, not a reason to skip.
            assert!(
                root.join("include/net/netmap.h").exists(),
                "NETMAP_LOCATION={}: no include/net/netmap.h there",
                root.display()
            );
            roots.push(root);
        }
        roots.push("/usr/local".into());
        roots.push("/usr".into());
        roots
            .into_iter()
            .map(|r| r.join("include/net/netmap.h"))
            .find(|p| p.exists())
    }

    pub fn run() {
        let Some(header) = find_header() else {
            println!(
                "cargo::warning=feature `bindgen`: net/netmap.h not found under \
                 $NETMAP_LOCATION/include, /usr/local/include or /usr/include; the ABI check \
                 against the header was skipped (set NETMAP_LOCATION to a netmap install)"
            );
            return;
        };
        println!("cargo::rerun-if-changed={}", header.display());
        // netmap.h expects its includer to have included these first (netmap_user.h does: the
        // integer types, struct timeval and IFNAMSIZ), so
        // parse it as a user program includes it: through a wrapper that does the same.
        let include_dir = header.parent().and_then(|d| d.parent()).unwrap();
        let wrapper = "#include <stdint.h>\n#include <sys/types.h>\n#include <sys/time.h>\n#include <net/if.h>\n\
                       #include <net/netmap.h>\n";
        let mut b = bindgen::Builder::default()
            .header_contents("netmap_rs_abi_check.h", wrapper)
            .clang_arg(format!("-I{}", include_dir.display()))
            .wrap_unsafe_ops(true)
            .layout_tests(false)
            .derive_default(false);
        for (c, _, _) in CHECKS {
            b = b.allowlist_type(c);
        }
        let bindings = b
            .generate()
            .unwrap_or_else(|e| panic!("bindgen failed on {}: {e}", header.display()));
        let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
        bindings
            .write_to_file(out.join("netmap_header.rs"))
            .expect("cannot write the generated bindings");
        let mut checks = String::from("// Generated by build.rs: header vs src/abi.rs.\n");
        for (c, rust, fields) in CHECKS {
            checks.push_str(&format!(
                "const _: () = assert!(::core::mem::size_of::<header::{c}>() == \
                 ::core::mem::size_of::<{rust}>(), \"size of {c} differs from the header\");\n"
            ));
            checks.push_str(&format!(
                "const _: () = assert!(::core::mem::align_of::<header::{c}>() == \
                 ::core::mem::align_of::<{rust}>(), \"alignment of {c} differs\");\n"
            ));
            for f in *fields {
                checks.push_str(&format!(
                    "const _: () = assert!(::core::mem::offset_of!(header::{c}, {f}) == \
                     ::core::mem::offset_of!({rust}, {f}), \"offset of {c}.{f} differs from \
                     the header\");\n"
                ));
            }
        }
        std::fs::write(out.join("netmap_abi_check.rs"), checks).expect("cannot write checks");
        println!("cargo::rustc-cfg=netmap_bindgen_check");
    }
}
