//! VALE switch control (kernel backend): attach and detach interfaces, list ports, create and
//! delete persistent VALE ports — what `vale-ctl` does, as a library.
//!
//! VALE is a software switch inside the netmap module; there is no emulated VALE switch, so on
//! a machine without the module every call fails with [`Error::ModuleNotLoaded`].
//!
//! ```no_run
//! use netmap_rs::vale;
//! vale::create_port("myport", &vale::NewPort::default())?;   // vale-ctl -n myport
//! vale::attach("vale0:myport", false)?;                       // vale-ctl -a vale0:myport
//! for p in vale::list()? {                                    // vale-ctl -l
//!     println!("{} bridge {} port {}", p.name, p.bridge, p.port);
//! }
//! vale::detach("vale0:myport")?;                              // vale-ctl -d vale0:myport
//! vale::delete_port("myport")?;                               // vale-ctl -r myport
//! # Ok::<(), netmap_rs::Error>(())
//! ```

use crate::abi::{
    self, NmreqRegister, NmreqValeAttach, NmreqValeDetach, NmreqValeList, NmreqValeNewif,
};
use crate::backend::kernel::{vale_request, vale_request_hdr};
use crate::error::Error;

/// One port of a VALE switch, as listed by [`list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValePort {
    /// Full name, `valeX:port`.
    pub name: String,
    /// Switch index.
    pub bridge: u16,
    /// Port index on the switch.
    pub port: u32,
}

/// Geometry of a persistent VALE port created with [`create_port`]; zeros take netmap's
/// defaults.
#[derive(Debug, Clone, Default)]
pub struct NewPort {
    /// Slots per TX ring.
    pub tx_slots: u32,
    /// Slots per RX ring.
    pub rx_slots: u32,
    /// Number of TX rings.
    pub tx_rings: u16,
    /// Number of RX rings.
    pub rx_rings: u16,
    /// Memory allocator id.
    pub mem_id: u16,
}

fn check_vale_name(name: &str) -> Result<(), Error> {
    let spec = crate::PortSpec::parse(name)?;
    if !spec.is_vale() {
        return Err(Error::InvalidPortName {
            name: name.into(),
            reason: "expected a VALE name, valeX:interface".into(),
        });
    }
    Ok(())
}

fn vale_error(e: Error, name: &str, what: &str) -> Error {
    match e {
        Error::NoSuchInterface { .. } => Error::no_such_interface(
            name,
            format!(
                "{what}: no such switch, interface or port (for attach, the interface must \
                 exist and support netmap; for detach, it must be attached)"
            ),
        ),
        Error::PortBusy(_) => Error::PortBusy(format!(
            "{name}: {what}: the interface is in use (already attached to a switch, or open \
             in netmap mode by a process)"
        )),
        other => other,
    }
}

/// Attaches the interface to a switch: `name` is `valeX:ifname` (`vale-ctl -a`). With
/// `host`, the interface's host-stack rings are attached too (`vale-ctl -h`). Returns the port
/// index on the switch.
pub fn attach(name: &str, host: bool) -> Result<u32, Error> {
    check_vale_name(name)?;
    let mut body = NmreqValeAttach {
        reg: NmreqRegister {
            nr_mode: if host {
                abi::NR_REG_NIC_SW
            } else {
                abi::NR_REG_ALL_NIC
            },
            ..Default::default()
        },
        ..Default::default()
    };
    vale_request(
        abi::NETMAP_REQ_VALE_ATTACH,
        name,
        Some(&mut body),
        "VALE attach",
    )
    .map_err(|e| vale_error(e, name, "attach"))?;
    Ok(body.port_index)
}

/// Detaches the interface from its switch: `name` is `valeX:ifname` (`vale-ctl -d`).
/// Returns the port index it had.
pub fn detach(name: &str) -> Result<u32, Error> {
    check_vale_name(name)?;
    let mut body = NmreqValeDetach::default();
    vale_request(
        abi::NETMAP_REQ_VALE_DETACH,
        name,
        Some(&mut body),
        "VALE detach",
    )
    .map_err(|e| vale_error(e, name, "detach"))?;
    Ok(body.port_index)
}

/// Lists the ports of every VALE switch (`vale-ctl -l`).
pub fn list() -> Result<Vec<ValePort>, Error> {
    let mut out = Vec::new();
    let mut body = NmreqValeList::default();
    while let Some(hdr) = vale_request_hdr(abi::NETMAP_REQ_VALE_LIST, "", &mut body)? {
        out.push(ValePort {
            name: hdr.name(),
            bridge: body.nr_bridge_idx,
            port: body.nr_port_idx,
        });
        body.nr_port_idx += 1;
        if out.len() > 1 << 16 {
            return Err(Error::BadLayout("the VALE list does not end".into()));
        }
    }
    Ok(out)
}

/// Creates a persistent VALE port (a netmap-only interface) named `name` (`vale-ctl -n`).
/// Attach it to a switch with [`attach`]`("valeX:name", false)`.
pub fn create_port(name: &str, geometry: &NewPort) -> Result<(), Error> {
    let mut body = NmreqValeNewif {
        nr_tx_slots: geometry.tx_slots,
        nr_rx_slots: geometry.rx_slots,
        nr_tx_rings: geometry.tx_rings,
        nr_rx_rings: geometry.rx_rings,
        nr_mem_id: geometry.mem_id,
        pad1: 0,
    };
    vale_request(
        abi::NETMAP_REQ_VALE_NEWIF,
        name,
        Some(&mut body),
        "VALE newif",
    )
    .map_err(|e| vale_error(e, name, "create"))
}

/// Deletes a persistent VALE port created with [`create_port`] (`vale-ctl -r`).
pub fn delete_port(name: &str) -> Result<(), Error> {
    vale_request::<()>(abi::NETMAP_REQ_VALE_DELIF, name, None, "VALE delif")
        .map_err(|e| vale_error(e, name, "delete"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_system_call() {
        assert!(matches!(
            attach("eth0", false),
            Err(Error::InvalidPortName { .. })
        ));
        assert!(matches!(
            detach("vale0:"),
            Err(Error::InvalidPortName { .. })
        ));
    }

    #[test]
    fn without_the_module_calls_say_so() {
        if crate::backend::kernel_available() {
            return; // checked against the real module separately
        }
        assert!(matches!(
            attach("vale0:eth0", false),
            Err(Error::ModuleNotLoaded)
        ));
        assert!(matches!(list(), Err(Error::ModuleNotLoaded)));
        assert!(matches!(
            create_port("p0", &NewPort::default()),
            Err(Error::ModuleNotLoaded)
        ));
    }
}
