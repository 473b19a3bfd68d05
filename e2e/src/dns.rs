//! A small authoritative DNS responder on loopback (UDP and TCP) for the tests that resolve names
//! (`verify-dns`, `/dnsaddr` bootstraps): a zone of A, AAAA, CNAME and TXT records that a test
//! can change while it runs. CNAMEs are followed for A and AAAA questions, as a server would;
//! a name with no record at all is NXDOMAIN. Stopped when dropped.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME, TXT},
    },
};
use parking_lot::Mutex;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
    task::JoinHandle,
};

/// Records by lowercase name with the trailing dot.
#[derive(Clone, Default)]
pub struct Zone {
    records: Arc<Mutex<BTreeMap<String, Vec<RData>>>>,
}

fn key(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    if name.ends_with('.') {
        name
    } else {
        format!("{name}.")
    }
}

impl Zone {
    pub fn a(&self, name: &str, ip: Ipv4Addr) -> &Self {
        self.add(name, RData::A(A(ip)))
    }

    pub fn aaaa(&self, name: &str, ip: Ipv6Addr) -> &Self {
        self.add(name, RData::AAAA(AAAA(ip)))
    }

    pub fn cname(&self, name: &str, target: &str) -> &Self {
        let target = Name::from_ascii(key(target)).expect("a valid CNAME target");
        self.add(name, RData::CNAME(CNAME(target)))
    }

    /// A TXT record with one string.
    pub fn txt(&self, name: &str, value: &str) -> &Self {
        self.add(name, RData::TXT(TXT::new(vec![value.to_string()])))
    }

    /// Removes every record of `name`.
    pub fn remove(&self, name: &str) {
        self.records.lock().remove(&key(name));
    }

    fn add(&self, name: &str, data: RData) -> &Self {
        self.records.lock().entry(key(name)).or_default().push(data);
        self
    }

    /// The answer to one question, or `None` for NXDOMAIN.
    fn answer(&self, question: &Name, record_type: RecordType) -> Option<Vec<Record>> {
        let records = self.records.lock();
        let name = key(&question.to_ascii());
        let data = records.get(&name)?;
        let mut out: Vec<Record> = data
            .iter()
            .filter(|d| d.record_type() == record_type)
            .map(|d| Record::from_rdata(question.clone(), 60, d.clone()))
            .collect();
        if out.is_empty() && matches!(record_type, RecordType::A | RecordType::AAAA) {
            for cname in data.iter().filter(|d| d.record_type() == RecordType::CNAME) {
                out.push(Record::from_rdata(question.clone(), 60, cname.clone()));
                if let RData::CNAME(CNAME(target)) = cname
                    && let Some(target_data) = records.get(&key(&target.to_ascii()))
                {
                    out.extend(
                        target_data
                            .iter()
                            .filter(|d| d.record_type() == record_type)
                            .map(|d| Record::from_rdata(target.clone(), 60, d.clone())),
                    );
                }
            }
        }
        Some(out)
    }

    fn respond(&self, request: &[u8]) -> Option<Vec<u8>> {
        let request = Message::from_vec(request).ok()?;
        let mut response = Message::new();
        response
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(request.op_code())
            .set_recursion_desired(request.recursion_desired())
            .set_recursion_available(true)
            .set_authoritative(true);
        for query in request.queries() {
            response.add_query(query.clone());
            match self.answer(query.name(), query.query_type()) {
                Some(records) => {
                    for record in records {
                        response.add_answer(record);
                    }
                }
                None => {
                    response.set_response_code(ResponseCode::NXDomain);
                }
            }
        }
        response.to_vec().ok()
    }
}

/// The responder's UDP and TCP servers, on one loopback port.
pub struct DnsResponder {
    pub address: SocketAddr,
    pub zone: Zone,
    tasks: Vec<JoinHandle<()>>,
}

impl DnsResponder {
    pub async fn start(zone: Zone) -> std::io::Result<DnsResponder> {
        // The same port for both; retry when the TCP side of a free UDP port is taken.
        for _ in 0..10 {
            let udp = UdpSocket::bind("127.0.0.1:0").await?;
            let address = udp.local_addr()?;
            let Ok(tcp) = TcpListener::bind(address).await else {
                continue;
            };
            let udp_zone = zone.clone();
            let tcp_zone = zone.clone();
            let tasks = vec![
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 4096];
                    while let Ok((len, from)) = udp.recv_from(&mut buffer).await {
                        if let Some(bytes) = udp_zone.respond(&buffer[..len]) {
                            let _ = udp.send_to(&bytes, from).await;
                        }
                    }
                }),
                tokio::spawn(async move {
                    while let Ok((mut stream, _)) = tcp.accept().await {
                        let zone = tcp_zone.clone();
                        tokio::spawn(async move {
                            let mut length = [0u8; 2];
                            while stream.read_exact(&mut length).await.is_ok() {
                                let mut request = vec![0u8; u16::from_be_bytes(length) as usize];
                                if stream.read_exact(&mut request).await.is_err() {
                                    return;
                                }
                                let Some(bytes) = zone.respond(&request) else {
                                    return;
                                };
                                let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                                framed.extend(bytes);
                                if stream.write_all(&framed).await.is_err() {
                                    return;
                                }
                            }
                        });
                    }
                }),
            ];
            return Ok(DnsResponder {
                address,
                zone,
                tasks,
            });
        }
        Err(std::io::Error::other(
            "no loopback port free for both UDP and TCP",
        ))
    }
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
