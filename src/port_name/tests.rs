//! Tests of port-name parsing and formatting.
use super::*;
use crate::abi::*;

#[test]
fn grammar_table() {
    // name, ifname, mode, ringid, flags, mem id
    let table: &[(&str, &str, u32, u16, u64, u16)] = &[
        ("eth0", "eth0", NR_REG_ALL_NIC, 0, 0, 0),
        ("netmap:eth0", "eth0", NR_REG_ALL_NIC, 0, 0, 0),
        ("eth0^", "eth0", NR_REG_SW, 0, 0, 0),
        ("eth0^1", "eth0", NR_REG_ONE_SW, 1, 0, 0),
        ("eth0*", "eth0", NR_REG_NIC_SW, 0, 0, 0),
        ("eth0-3", "eth0", NR_REG_ONE_NIC, 3, 0, 0),
        (
            "netmap:eth0-3/x",
            "eth0",
            NR_REG_ONE_NIC,
            3,
            NR_EXCLUSIVE,
            0,
        ),
        ("eth0/R", "eth0", NR_REG_ALL_NIC, 0, NR_RX_RINGS_ONLY, 0),
        ("eth0/T", "eth0", NR_REG_ALL_NIC, 0, NR_TX_RINGS_ONLY, 0),
        (
            "eth0/rt",
            "eth0",
            NR_REG_ALL_NIC,
            0,
            NR_MONITOR_RX | NR_MONITOR_TX,
            0,
        ),
        ("eth0/z", "eth0", NR_REG_ALL_NIC, 0, NR_ZCOPY_MON, 0),
        ("eth0@2", "eth0", NR_REG_ALL_NIC, 0, 0, 2),
        ("eth0-1/x@3", "eth0", NR_REG_ONE_NIC, 1, NR_EXCLUSIVE, 3),
        ("vale0:p1", "vale0:p1", NR_REG_ALL_NIC, 0, 0, 0),
        ("netmap:vale1:vi0-0", "vale1:vi0", NR_REG_ONE_NIC, 0, 0, 0),
        ("pipe{1", "pipe{1", NR_REG_ALL_NIC, 0, 0, 0),
        ("pipe}1", "pipe}1", NR_REG_ALL_NIC, 0, 0, 0),
        ("eth0{foo", "eth0{foo", NR_REG_ALL_NIC, 0, 0, 0),
        ("eth0}foo-2", "eth0}foo", NR_REG_ONE_NIC, 2, 0, 0),
        ("x{a/x", "x{a", NR_REG_ALL_NIC, 0, NR_EXCLUSIVE, 0),
    ];
    for &(name, ifname, mode, ringid, flags, mem) in table {
        let s = PortSpec::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.ifname, ifname, "{name}");
        assert_eq!(s.rings.mode(), mode, "{name}");
        assert_eq!(s.rings.ring_id(), ringid, "{name}");
        assert_eq!(s.flags, flags, "{name}");
        assert_eq!(s.mem_id, mem, "{name}");
        // Modes never leak into flags.
        assert_eq!(s.flags & 0xff, 0, "{name}");
        // Round trip through the formatter.
        let again = PortSpec::parse(&s.to_string()).unwrap();
        assert_eq!(again, s, "{name} -> {s}");
    }
}

#[test]
fn kinds() {
    assert_eq!(PortSpec::parse("eth0").unwrap().kind, PortKind::Nic);
    assert_eq!(
        PortSpec::parse("vale0:p1").unwrap().kind,
        PortKind::Vale {
            switch: "vale0".into(),
            port: "p1".into()
        }
    );
    assert_eq!(
        PortSpec::parse("a}b").unwrap().kind,
        PortKind::Pipe {
            parent: "a".into(),
            id: "b".into(),
            role: PipeRole::Slave
        }
    );
}

#[test]
fn linux_socket_prefixes() {
    let s = PortSpec::parse("xdp:eth0-2").unwrap();
    assert_eq!(s.prefix, NamePrefix::Xdp);
    assert_eq!(
        (s.ifname.as_str(), s.rings),
        ("eth0", RingSelect::OneNic(2))
    );
    assert_eq!(s.to_string(), "xdp:eth0-2");
    let s = PortSpec::parse("afpacket:veth0/T").unwrap();
    assert_eq!(s.prefix, NamePrefix::AfPacket);
    assert_eq!(s.flags, NR_TX_RINGS_ONLY);
    assert_eq!(PortSpec::parse(&s.to_string()).unwrap(), s);
    let s = PortSpec::parse("eth0").unwrap();
    assert_eq!(s.prefix, NamePrefix::Bare);
    assert_eq!(s.to_string(), "eth0");
    assert_eq!(
        PortSpec::parse("netmap:eth0").unwrap().prefix,
        NamePrefix::Netmap
    );
    // What only the netmap module provides is refused, naming it.
    for name in [
        "xdp:eth0^",
        "xdp:eth0^1",
        "afpacket:eth0*",
        "xdp:vale0:p1",
        "afpacket:x{1",
        "xdp:eth0/z",
        "xdp:eth0@2",
    ] {
        let e = PortSpec::parse(name).expect_err(name).to_string();
        assert!(e.contains("netmap kernel module"), "{name}: {e}");
    }
    let e = PortSpec::parse("afpacket:eth0-1").unwrap_err().to_string();
    assert!(e.contains("xdp:IF-N"), "{e}");
    assert!(PortSpec::parse("xdp:").is_err());
}

#[test]
fn bad_names_are_rejected_with_reasons() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("netmap:", "empty"),
        ("-1", "empty"),
        ("eth0/q", "unknown flag"),
        ("eth0/", "followed by flags"),
        ("eth0-x", "decimal number"),
        ("eth0-", "decimal number"),
        ("eth0^z", "decimal number"),
        ("eth0-99999", "out of range"),
        ("eth0@", "decimal number"),
        ("eth0@m", "decimal number"),
        ("eth 0", "character"),
        ("{1", "parent"),
        ("x{", "identifier"),
        ("x{1}2", "one '{'"),
        ("vale0:", "port after"),
        ("foo:bar", "only allowed"),
        ("x{1^", "no host rings"),
        ("x{1*", "no host rings"),
        ("eth0*3", "unexpected text"),
    ];
    for &(name, needle) in cases {
        let err = PortSpec::parse(name).expect_err(name).to_string();
        assert!(err.contains(needle), "{name}: {err}");
    }
    let long = "a".repeat(64);
    assert!(PortSpec::parse(&long)
        .unwrap_err()
        .to_string()
        .contains("at most 63"));
    assert!(PortSpec::parse(&"a".repeat(63)).is_ok());
}

#[test]
fn filter_suffix() {
    let s = PortSpec::parse("xdp:eth0-1/R#udp=53,5353,ether=0x88b5").unwrap();
    assert_eq!(s.ifname, "eth0");
    assert_eq!(s.rings, RingSelect::OneNic(1));
    assert_eq!(s.flags, NR_RX_RINGS_ONLY);
    let f = s.filter.clone().unwrap();
    assert_eq!(f.ports(), &[53, 5353]);
    assert_eq!(f.ethertypes(), &[0x88b5]);
    assert_eq!(f, XdpFilter::udp_ports(&[5353, 53]).ethertype(0x88b5));
    assert_eq!(s.to_string(), "xdp:eth0-1/R#udp=53,5353,ether=0x88b5");
    assert_eq!(PortSpec::parse(&s.to_string()).unwrap(), s);
    // Kinds may come in any order; a bare number continues the kind before it.
    let s = PortSpec::parse("afpacket:eth0#ether=35061,udp=7,9,ether=0x0806").unwrap();
    let f = s.filter.unwrap();
    assert_eq!(f.ports(), &[7, 9]);
    assert_eq!(f.ethertypes(), &[0x88f5, 0x0806]);
    assert_eq!(PortSpec::parse("eth0").unwrap().filter, None);
}

#[test]
fn filter_suffix_errors() {
    for (name, needle) in [
        ("xdp:eth0#", "kind"),
        ("xdp:eth0#53", "needs a kind"),
        ("xdp:eth0#udp=65536", "0..=65535"),
        ("xdp:eth0#udp=x", "decimal"),
        ("xdp:eth0#tcp=80", "unknown filter kind"),
        ("xdp:eth0#ether=0x1ffff", "0xffff"),
        ("xdp:#udp=53", "interface name is empty"),
        ("vale0:p1#udp=53", "VALE ports and pipes"),
        ("p{1#udp=53", "VALE ports and pipes"),
        (
            "xdp:eth0#ether=0x9001,0x9002,0x9003,0x9004,0x9005,0x9006,0x9007,0x9008,0x9009",
            "at most 8",
        ),
        ("xdp:eth0#ether=0x0800,64", "802.3 length"),
    ] {
        let e = PortSpec::parse(name).unwrap_err().to_string();
        assert!(e.contains(needle), "{name}: {e}");
    }
}

#[test]
fn builder_filter_meets_the_name_and_the_backend() {
    use crate::sync::NetmapBuilder;
    // Two different filters: refused before anything opens.
    let e = NetmapBuilder::new("xdp:eth0#udp=53")
        .filter(XdpFilter::udp_port(54))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("give one of them"), "{e}");
    let e = NetmapBuilder::new("xdp:eth0")
        .filter(XdpFilter::default())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("takes nothing"), "{e}");
    // Emulated pipes have no kernel filter: a clear error, not a silent no-op.
    let e = NetmapBuilder::new("filt{1")
        .backend(crate::BackendChoice::Emulated)
        .filter(XdpFilter::udp_port(53))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("no packet filter"), "{e}");
}
