//! Syncthing instances on loopback, for benchmarks that put DIG's replication beside it: each
//! instance gets its own home, an identity from `syncthing generate`, and a config written here
//! that turns off everything reaching the internet (discovery, relays, NAT, STUN, usage and crash
//! reports, upgrades), lists every other instance at its loopback address and shares one folder
//! with all of them. Processes are killed by PID when the cluster is dropped.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::process::{ProcessSpec, TestProcess, free_loopback_addr};

/// The id of the one shared folder.
pub const FOLDER_ID: &str = "bench";

/// How long an instance gets to answer its REST API after start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The `syncthing` executable on the `PATH`.
pub fn binary() -> Option<PathBuf> {
    crate::browser::find_program("syncthing")
}

/// One instance as written into every config: its identity and where it listens.
#[derive(Clone, Debug)]
pub struct Peer {
    pub name: String,
    pub device_id: String,
    pub listen: SocketAddr,
}

/// What one instance's `config.xml` holds besides the peers.
#[derive(Clone, Debug)]
pub struct InstanceConfig {
    pub listen: SocketAddr,
    pub gui: SocketAddr,
    pub api_key: String,
    pub folder: PathBuf,
}

/// The `config.xml` of one instance. Fields left out take Syncthing's defaults.
///
/// `copyRangeMethod` is `all` (reflink, then `copy_file_range`, then a plain copy) so that
/// Syncthing reuses unchanged blocks in the kernel where the file system allows, as DIG would;
/// `setLowPriority` is off so that both systems run at the same priority.
pub fn config_xml(me: &InstanceConfig, peers: &[Peer]) -> String {
    let folder_devices: String = peers
        .iter()
        .map(|p| format!("        <device id=\"{}\"></device>\n", p.device_id))
        .collect();
    let devices: String = peers
        .iter()
        .map(|p| {
            format!(
                "    <device id=\"{}\" name=\"{}\" compression=\"metadata\" introducer=\"false\">\n        <address>tcp://{}</address>\n        <paused>false</paused>\n        <autoAcceptFolders>false</autoAcceptFolders>\n    </device>\n",
                p.device_id,
                xml_escape(&p.name),
                p.listen
            )
        })
        .collect();
    format!(
        r#"<configuration version="36">
    <folder id="{FOLDER_ID}" label="{FOLDER_ID}" path="{folder}" type="sendreceive" rescanIntervalS="3600" fsWatcherEnabled="true" fsWatcherDelayS="1" ignorePerms="false" autoNormalize="true">
        <filesystemType>basic</filesystemType>
{folder_devices}        <copyRangeMethod>all</copyRangeMethod>
        <paused>false</paused>
    </folder>
{devices}    <gui enabled="true" tls="false" debugging="false">
        <address>{gui}</address>
        <apikey>{api_key}</apikey>
    </gui>
    <options>
        <listenAddress>tcp://{listen}</listenAddress>
        <globalAnnounceEnabled>false</globalAnnounceEnabled>
        <localAnnounceEnabled>false</localAnnounceEnabled>
        <relaysEnabled>false</relaysEnabled>
        <natEnabled>false</natEnabled>
        <stunKeepaliveStartS>0</stunKeepaliveStartS>
        <urAccepted>-1</urAccepted>
        <crashReportingEnabled>false</crashReportingEnabled>
        <autoUpgradeIntervalH>0</autoUpgradeIntervalH>
        <startBrowser>false</startBrowser>
        <setLowPriority>false</setLowPriority>
        <reconnectionIntervalS>2</reconnectionIntervalS>
    </options>
</configuration>
"#,
        folder = xml_escape(&me.folder.display().to_string()),
        gui = me.gui,
        api_key = xml_escape(&me.api_key),
        listen = me.listen,
    )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A running Syncthing instance, killed (by PID) when dropped.
pub struct Instance {
    pub name: String,
    pub home: PathBuf,
    /// The shared folder.
    pub folder: PathBuf,
    pub device_id: String,
    pub process: TestProcess,
    gui: SocketAddr,
    api_key: String,
    http: reqwest::Client,
}

impl Instance {
    /// GET on the REST API, authenticated with the instance's API key.
    pub async fn rest(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("http://{}{path}", self.gui);
        let response = self
            .http
            .get(&url)
            .header("X-API-Key", &self.api_key)
            .send()
            .await
            .with_context(|| format!("{}: GET {url}", self.name))?;
        let status = response.status();
        if !status.is_success() {
            bail!("{}: GET {url} answered {status}", self.name);
        }
        response
            .json()
            .await
            .with_context(|| format!("{}: GET {url}: not JSON", self.name))
    }

    /// Bytes received and sent over every connection since start (`total` of
    /// `/rest/system/connections`, TLS and protocol framing included).
    pub async fn wire_bytes(&self) -> anyhow::Result<(u64, u64)> {
        let body = self.rest("/rest/system/connections").await?;
        let total = &body["total"];
        match (
            total["inBytesTotal"].as_u64(),
            total["outBytesTotal"].as_u64(),
        ) {
            (Some(received), Some(sent)) => Ok((received, sent)),
            _ => bail!(
                "{}: /rest/system/connections has no total byte counts: {body}",
                self.name
            ),
        }
    }

    /// Device ids this instance is connected to.
    pub async fn connected(&self) -> anyhow::Result<Vec<String>> {
        let body = self.rest("/rest/system/connections").await?;
        Ok(body["connections"]
            .as_object()
            .map(|c| {
                c.iter()
                    .filter(|(_, v)| v["connected"] == true)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The shared folder's state (`idle`, `scanning`, `syncing`, ...) and the bytes it still needs.
    pub async fn folder_state(&self) -> anyhow::Result<(String, u64)> {
        let body = self
            .rest(&format!("/rest/db/status?folder={FOLDER_ID}"))
            .await?;
        Ok((
            body["state"].as_str().unwrap_or_default().to_string(),
            body["needBytes"].as_u64().unwrap_or(u64::MAX),
        ))
    }
}

/// `count` instances sharing one folder, all on 127.0.0.1.
pub struct Cluster {
    pub instances: Vec<Instance>,
}

impl Cluster {
    /// Generates identities and configs under `root/st-<i>` and starts every instance; waits
    /// until each answers its REST API.
    pub async fn start(binary: &Path, root: &Path, count: usize) -> anyhow::Result<Self> {
        dig_core::crypto::install_crypto_provider();
        let mut peers = Vec::new();
        let mut configs = Vec::new();
        for index in 0..count {
            let name = format!("st-{index}");
            let home = root.join(&name);
            let folder = home.join("folder");
            // Syncthing only syncs a folder holding its marker.
            std::fs::create_dir_all(folder.join(".stfolder"))
                .with_context(|| format!("creating {}", folder.display()))?;
            let device_id = generate(binary, &home)?;
            peers.push(Peer {
                name: name.clone(),
                device_id,
                listen: free_loopback_addr()?,
            });
            configs.push((home, folder));
        }
        let mut instances = Vec::new();
        for ((home, folder), me) in configs.into_iter().zip(&peers) {
            let config = InstanceConfig {
                listen: me.listen,
                gui: free_loopback_addr()?,
                api_key: format!("dig-bench-{}", me.name),
                folder: folder.clone(),
            };
            let file = home.join("config.xml");
            std::fs::write(&file, config_xml(&config, &peers))
                .with_context(|| format!("writing {}", file.display()))?;
            let process = ProcessSpec::new(binary)
                .name(me.name.clone())
                .args([
                    "serve".to_string(),
                    format!("--home={}", home.display()),
                    "--no-browser".into(),
                    "--no-restart".into(),
                    "--no-upgrade".into(),
                    "--no-default-folder".into(),
                    "--skip-port-probing".into(),
                ])
                .env("STNOUPGRADE", "1")
                .env("STNORESTART", "1")
                // Without it, `serve` forks a monitor that restarts the real process: the PID
                // would be the monitor's (its memory, not Syncthing's) and a SIGKILL would orphan
                // the child.
                .env("STMONITORED", "1")
                .spawn()?;
            instances.push(Instance {
                name: me.name.clone(),
                home,
                folder,
                device_id: me.device_id.clone(),
                process,
                gui: config.gui,
                api_key: config.api_key,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()?,
            });
        }
        let cluster = Self { instances };
        for instance in &cluster.instances {
            let started = Instant::now();
            while instance.rest("/rest/system/status").await.is_err() {
                if started.elapsed() > START_TIMEOUT {
                    bail!(
                        "{} did not answer its REST API within {START_TIMEOUT:?}; output:\n{}",
                        instance.name,
                        instance.process.output()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(cluster)
    }

    /// Waits until every instance is connected to every other one and the shared folder is idle
    /// with nothing to pull everywhere.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let mut ready = true;
            for instance in &self.instances {
                let connected = instance.connected().await?;
                let all = self
                    .instances
                    .iter()
                    .filter(|other| other.device_id != instance.device_id)
                    .all(|other| connected.contains(&other.device_id));
                let (state, need) = instance.folder_state().await?;
                if !all || state != "idle" || need != 0 {
                    ready = false;
                    break;
                }
            }
            if ready {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                let mut report = String::new();
                for instance in &self.instances {
                    report.push_str(&format!(
                        "\n{}: connected to {:?}, folder {:?}",
                        instance.name,
                        instance.connected().await.unwrap_or_default(),
                        instance.folder_state().await.ok()
                    ));
                }
                bail!("Syncthing instances not connected and idle within {timeout:?}:{report}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Bytes received by each instance since start, by name.
    pub async fn received_bytes(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut bytes = BTreeMap::new();
        for instance in &self.instances {
            bytes.insert(instance.name.clone(), instance.wire_bytes().await?.0);
        }
        Ok(bytes)
    }
}

/// Runs `syncthing generate` into `home` and returns the new device id.
fn generate(binary: &Path, home: &Path) -> anyhow::Result<String> {
    let output = Command::new(binary)
        .arg("generate")
        .arg(format!("--home={}", home.display()))
        .arg("--no-default-folder")
        .output()
        .with_context(|| format!("running {} generate", binary.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!(
            "syncthing generate --home={} failed ({}): {text}",
            home.display(),
            output.status
        );
    }
    device_id_in(&text).with_context(|| {
        format!(
            "syncthing generate --home={} printed no device id: {text}",
            home.display()
        )
    })
}

/// The id in a `Device ID: XXXXXXX-...` line of `syncthing generate`'s output.
fn device_id_in(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let id = line.split("Device ID:").nth(1)?.trim();
        (id.len() == 63).then(|| id.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_id_is_read_from_generate_output() {
        let output = "00:43:56 INFO: Generating ECDSA key and certificate for syncthing...\nDevice ID: 3NF6AF6-U333RFD-SRB7VTH-S42CISO-XMZTS2X-4KB6AS6-IR3HGNW-BSI3CAT\n";
        assert_eq!(
            device_id_in(output).as_deref(),
            Some("3NF6AF6-U333RFD-SRB7VTH-S42CISO-XMZTS2X-4KB6AS6-IR3HGNW-BSI3CAT")
        );
        assert_eq!(device_id_in("no id here"), None);
    }

    #[test]
    fn the_config_stays_on_loopback_and_shares_the_folder_with_every_peer() {
        let peers: Vec<Peer> = (0..3)
            .map(|i| Peer {
                name: format!("st-{i}"),
                device_id: format!("ID{i}"),
                listen: SocketAddr::from(([127, 0, 0, 1], 22000 + i)),
            })
            .collect();
        let me = InstanceConfig {
            listen: peers[0].listen,
            gui: SocketAddr::from(([127, 0, 0, 1], 8384)),
            api_key: "key".into(),
            folder: PathBuf::from("/tmp/a&b"),
        };
        let xml = config_xml(&me, &peers);
        for off in [
            "globalAnnounceEnabled",
            "localAnnounceEnabled",
            "relaysEnabled",
            "natEnabled",
            "crashReportingEnabled",
        ] {
            assert!(xml.contains(&format!("<{off}>false</{off}>")), "{off}");
        }
        assert!(xml.contains("<urAccepted>-1</urAccepted>"));
        assert!(xml.contains("<listenAddress>tcp://127.0.0.1:22000</listenAddress>"));
        assert!(xml.contains("<address>127.0.0.1:8384</address>"));
        assert!(xml.contains("<apikey>key</apikey>"));
        assert!(xml.contains("path=\"/tmp/a&amp;b\""));
        for i in 0..3 {
            assert!(xml.contains(&format!("<device id=\"ID{i}\"></device>")));
            assert!(xml.contains(&format!("<address>tcp://127.0.0.1:{}</address>", 22000 + i)));
        }
    }
}
