//! The embedded MQTT broker: rumqttd, configured from a TOML string and run on its own
//! thread, so that one `doorward serve` is a whole system. It holds nothing the server
//! trusts: it is just the meeting point (docs/PROTOCOL.md §1).

use std::net::{SocketAddr, TcpListener};

use anyhow::{anyhow, Context, Result};

/// Most client connections the embedded broker accepts.
pub const EMBEDDED_MAX_CONNECTIONS: usize = 10_000;
/// Largest MQTT payload the embedded broker forwards, in bytes. Larger than an envelope
/// (8192) so that an oversized message reaches the gateway, which drops and counts it.
pub const EMBEDDED_MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Most unacknowledged QoS 1 messages per connection in the embedded broker.
pub const EMBEDDED_MAX_INFLIGHT: usize = 100;
/// Bytes of one in-memory log segment per topic filter in the embedded broker.
pub const EMBEDDED_SEGMENT_BYTES: usize = 1024 * 1024;
/// Segments kept per topic filter in the embedded broker.
pub const EMBEDDED_SEGMENT_COUNT: usize = 10;

/// Binds `listen` once to learn the real address (port 0 picks a free port) and to turn a
/// busy port into an error that names the port and the flag, then starts rumqttd on that
/// address on its own thread. Returns the address it listens on.
pub fn start(listen: SocketAddr) -> Result<SocketAddr> {
    let probe = TcpListener::bind(listen).map_err(|e| {
        anyhow!(
            "the embedded MQTT broker cannot listen on {listen}: {e}. Another broker (or \
             another doorward) may be using port {}; choose another address with \
             --mqtt-listen ADDR (or DOORWARD_MQTT_LISTEN), or use that broker with \
             --mqtt mqtt://HOST:PORT",
            listen.port()
        )
    })?;
    let addr = probe.local_addr().context("embedded broker address")?;
    drop(probe);
    let config: rumqttd::Config =
        toml::from_str(&config_toml(addr)).context("embedded broker configuration")?;
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "the embedded MQTT broker stopped");
            }
        })
        .context("starting the embedded broker thread")?;
    Ok(addr)
}

/// rumqttd's configuration: one MQTT 3.1.1 listener, no console, no cluster.
fn config_toml(addr: SocketAddr) -> String {
    format!(
        r#"id = 0

[router]
max_connections = {EMBEDDED_MAX_CONNECTIONS}
max_outgoing_packet_count = 200
max_segment_size = {EMBEDDED_SEGMENT_BYTES}
max_segment_count = {EMBEDDED_SEGMENT_COUNT}

[v4.1]
name = "doorward-v4"
listen = "{addr}"
next_connection_delay_ms = 1

[v4.1.connections]
connection_timeout_ms = 5000
max_payload_size = {EMBEDDED_MAX_PAYLOAD_BYTES}
max_inflight_count = {EMBEDDED_MAX_INFLIGHT}
dynamic_filters = true
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses() {
        let c: rumqttd::Config = toml::from_str(&config_toml("127.0.0.1:1".parse().unwrap()))
            .expect("the embedded broker configuration parses");
        assert!(c.v4.is_some());
    }

    #[test]
    fn a_busy_port_names_the_port_and_the_flag() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let msg = start(addr).unwrap_err().to_string();
        assert!(msg.contains(&addr.port().to_string()), "{msg}");
        assert!(msg.contains("--mqtt-listen"), "{msg}");
    }
}
