//! `dig-sidecar verify-dns` against a DNS responder this test runs on loopback, and a real
//! `dig-bootstrap` answering `/health` on 127.0.0.1.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use dig_e2e::{bootstrap::BootstrapServer, process::binary_path};
use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, CNAME},
    },
};
use tokio::net::UdpSocket;

/// The zone: name -> records (CNAMEs are followed for A/AAAA questions, as a server would).
fn answers(question: &Name, record_type: RecordType) -> Option<Vec<Record>> {
    let name = question.to_ascii().to_lowercase();
    let a = |owner: &Name, ip: [u8; 4]| {
        Record::from_rdata(owner.clone(), 60, RData::A(A(Ipv4Addr::from(ip))))
    };
    let registry = Name::from_ascii("registry.dig.test.").unwrap();
    match name.as_str() {
        "registry.dig.test." => Some(match record_type {
            RecordType::A => vec![a(question, [127, 0, 0, 1])],
            _ => Vec::new(),
        }),
        "alias.dig.test." => Some(match record_type {
            RecordType::CNAME => vec![Record::from_rdata(
                question.clone(),
                60,
                RData::CNAME(CNAME(registry.clone())),
            )],
            RecordType::A => vec![
                Record::from_rdata(question.clone(), 60, RData::CNAME(CNAME(registry.clone()))),
                a(&registry, [127, 0, 0, 1]),
            ],
            _ => Vec::new(),
        }),
        // One healthy address and one where nothing listens.
        "partly-broken.dig.test." => Some(match record_type {
            RecordType::A => vec![a(question, [127, 0, 0, 1]), a(question, [127, 0, 0, 2])],
            _ => Vec::new(),
        }),
        _ => None,
    }
}

async fn serve_dns(socket: UdpSocket) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buffer).await else {
            return;
        };
        let Ok(request) = Message::from_vec(&buffer[..len]) else {
            continue;
        };
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
            match answers(query.name(), query.query_type()) {
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
        if let Ok(bytes) = response.to_vec() {
            let _ = socket.send_to(&bytes, from).await;
        }
    }
}

async fn verify(nameserver: SocketAddr, host: &str, port: u16) -> anyhow::Result<(i32, String)> {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(binary_path("dig-sidecar")?)
            .args(["verify-dns", host, "--port", &port.to_string()])
            .args(["--nameserver", &nameserver.to_string(), "--timeout", "2s"])
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.code().unwrap_or(-1), text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_dns_checks_every_address_and_fails_on_a_dead_one() -> anyhow::Result<()> {
    let bootstrap = BootstrapServer::start(&[]).await?;
    let port = bootstrap.address.port();
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let nameserver = socket.local_addr()?;
    let dns = tokio::spawn(serve_dns(socket));

    let (code, text) = verify(nameserver, "registry.dig.test", port).await?;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("RECORD") && text.contains("HEALTH"),
        "a table: {text}"
    );
    assert!(
        text.contains("127.0.0.1") && text.contains("ok ("),
        "{text}"
    );
    assert!(text.contains("registry.dig.test: OK"), "{text}");

    let (code, text) = verify(nameserver, "alias.dig.test", port).await?;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("CNAME") && text.contains("registry.dig.test."),
        "{text}"
    );

    let (code, text) = verify(nameserver, "partly-broken.dig.test", port).await?;
    assert_ne!(code, 0, "a dead address fails the check: {text}");
    assert!(
        text.contains("127.0.0.2") && text.contains("unreachable"),
        "{text}"
    );
    assert!(
        text.contains("127.0.0.1") && text.contains("ok ("),
        "{text}"
    );
    assert!(text.contains("FAILED"), "{text}");

    let (code, text) = verify(nameserver, "missing.dig.test", port).await?;
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("resolves to no address"), "{text}");

    dns.abort();
    Ok(())
}
