//! `doorward audit`: offline verification of an exported record (I7).

use std::io::BufReader;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use doorward_control::audit::verify_export;
use doorward_proto::PubKey;

/// Exit code when the export does not verify (as opposed to 1 for usage or IO errors).
pub const EXIT_NOT_VERIFIED: u8 = 3;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify an audit export offline: every hash link and index, every checkpoint signature,
    /// and that a signed checkpoint covers the last entry. Prints a summary and exits 0 when
    /// the export verifies; otherwise names the first bad entry and exits 3.
    Verify {
        /// The export file.
        file: PathBuf,
        /// The server's public key (64 hex characters) the checkpoints must be signed with.
        /// Without it the export's own key is used and printed, for you to compare.
        #[arg(long, value_name = "HEX")]
        server_key: Option<String>,
    },
}

/// Runs an audit subcommand. An export that does not verify ends the process with
/// [`EXIT_NOT_VERIFIED`] after the report is printed.
pub fn run(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify { file, server_key } => {
            let expected = server_key
                .map(|h| {
                    PubKey::from_hex(h.trim()).context("--server-key must be 64 hex characters")
                })
                .transpose()?;
            let f = std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            match verify_export(BufReader::new(f), expected.as_ref()) {
                Ok(r) => {
                    println!("verified: {}", file.display());
                    println!("  home          {}", r.home);
                    println!("  server key    {}", r.server);
                    println!(
                        "  entries       {} (from index {}), {} collapsed idle-proof runs",
                        r.entries, r.first_index, r.device_checkpoints
                    );
                    println!("  checkpoints   {}", r.checkpoints);
                    println!("  head          {}", r.head);
                    println!(
                        "  last entry at {} ms, last checkpoint at {} ms",
                        r.last_entry_ms, r.last_checkpoint_ms
                    );
                    if expected.is_none() {
                        println!(
                            "  note: checked against the key the export names; pass --server-key \
                             to require your server's key"
                        );
                    }
                    Ok(())
                }
                Err(e) => {
                    println!("NOT VERIFIED: {}", file.display());
                    match e.index() {
                        Some(i) => println!("  first bad entry: {i}"),
                        None => println!("  the header is bad"),
                    }
                    println!("  {e}");
                    std::process::exit(EXIT_NOT_VERIFIED.into())
                }
            }
        }
    }
}
