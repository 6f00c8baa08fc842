//! vale_ctl: a small `vale-ctl` over `netmap_rs::vale` (kernel backend; needs the netmap
//! module and root).
//!
//!     cargo run --example vale_ctl -- -l                 # list switch ports
//!     cargo run --example vale_ctl -- -n myport          # create a persistent VALE port
//!     cargo run --example vale_ctl -- -a vale0:myport    # attach it (or a NIC) to vale0
//!     cargo run --example vale_ctl -- -h vale0:eth0      # attach a NIC with its host rings
//!     cargo run --example vale_ctl -- -d vale0:myport    # detach
//!     cargo run --example vale_ctl -- -r myport          # delete the persistent port
//!
//! Without the module every command fails with the error that says how to load it.

use netmap_rs::vale;

fn usage() -> ! {
    eprintln!("usage: vale_ctl -l | -n NAME | -r NAME | -a valeX:IF | -h valeX:IF | -d valeX:IF");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (op, arg) = match args.as_slice() {
        [op] if op == "-l" => (op.as_str(), None),
        [op, arg] => (op.as_str(), Some(arg.as_str())),
        _ => usage(),
    };
    let result = match (op, arg) {
        ("-l", None) => vale::list().map(|ports| {
            for p in &ports {
                println!("{:<24} bridge {:<3} port {}", p.name, p.bridge, p.port);
            }
            println!("{} port(s)", ports.len());
        }),
        ("-n", Some(name)) => vale::create_port(name, &vale::NewPort::default())
            .map(|()| println!("created persistent VALE port {name}")),
        ("-r", Some(name)) => {
            vale::delete_port(name).map(|()| println!("deleted VALE port {name}"))
        }
        ("-a", Some(name)) => {
            vale::attach(name, false).map(|i| println!("attached {name} as port {i}"))
        }
        ("-h", Some(name)) => vale::attach(name, true)
            .map(|i| println!("attached {name} with host rings as port {i}")),
        ("-d", Some(name)) => {
            vale::detach(name).map(|i| println!("detached {name} (was port {i})"))
        }
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("vale_ctl: {e}");
        std::process::exit(1);
    }
}
