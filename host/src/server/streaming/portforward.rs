//! `kubectl port-forward` (pkg/kubelet/cri/streaming/portforward, `portforward.k8s.io` over
//! SPDY): the client opens a data and an error stream per connection it forwards, paired by
//! `requestid` and naming the pod's `port`. Each connection carries one HTTP request to what
//! the pod's images serve (the plugin answers it); a port nothing listens on gets the
//! runtime's refusal on the error stream, which kubectl prints.

use super::spdy::{Connection, Stream, frame};
use crate::runtime::{ContainerRuntime, HttpRequest, HttpResponse, KeyValue};
use std::collections::HashMap;
use std::sync::Arc;

/// The one protocol.
pub const PROTOCOL: &str = "portforward.k8s.io";

/// The most of a request read before it is answered (its head; a body is not passed on).
const MAX_REQUEST: usize = 64 * 1024;
/// Connections of one port-forward waiting for their second stream.
const MAX_PENDING: usize = 32;

/// Serves one port-forward connection to sandbox `sandbox` until the client goes away.
pub async fn serve(mut conn: Connection, runtime: Arc<dyn ContainerRuntime>, sandbox: String) {
    let mut pending: HashMap<String, (Option<Stream>, Option<Stream>)> = HashMap::new();
    while let Some(stream) = conn.streams.recv().await {
        let request = frame::header(&stream.headers, "requestid").unwrap_or_default().to_string();
        if !pending.contains_key(&request) && pending.len() >= MAX_PENDING {
            continue;
        }
        let pair = pending.entry(request.clone()).or_default();
        match frame::header(&stream.headers, "streamtype") {
            Some("data") => pair.0 = Some(stream),
            Some("error") => pair.1 = Some(stream),
            _ => continue,
        }
        // With both streams of the pair, the connection is forwarded; until then it waits.
        if pair.0.is_some()
            && pair.1.is_some()
            && let Some((Some(data), Some(error))) = pending.remove(&request)
        {
            tokio::spawn(forward(runtime.clone(), sandbox.clone(), data, error));
        }
    }
    conn.close().await;
}

/// One forwarded connection: its request to the pod's server, the answer back.
async fn forward(runtime: Arc<dyn ContainerRuntime>, sandbox: String, mut data: Stream, error: Stream) {
    let port = frame::header(&data.headers, "port").unwrap_or_default().to_string();
    let outcome = match port.parse::<u16>() {
        Ok(port) if port > 0 => {
            let request = read_request(&mut data).await;
            runtime.serve_http(&sandbox, port, &request).await.map_err(|e| format!("error forwarding port {port} to pod {sandbox}, uid : {e}"))
        }
        _ => Err(format!("invalid port {port:?}")),
    };
    match outcome {
        Ok(response) => {
            let _ = data.writer.write(&response_bytes(&response)).await;
        }
        Err(message) => {
            let _ = error.writer.write(message.as_bytes()).await;
        }
    }
    data.writer.finish().await;
    error.writer.finish().await;
}

/// The request the client sends, as far as its head; bytes that are no HTTP request give a
/// request without a method, which a server answers with 400.
async fn read_request(data: &mut Stream) -> HttpRequest {
    let mut bytes = Vec::new();
    while let Some(chunk) = data.incoming.recv().await {
        bytes.extend_from_slice(&chunk);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&bytes) {
            Ok(httparse::Status::Complete(_)) => {
                return HttpRequest {
                    method: parsed.method.unwrap_or_default().to_string(),
                    path: parsed.path.unwrap_or("/").to_string(),
                    headers: parsed
                        .headers
                        .iter()
                        .map(|h| KeyValue { key: h.name.to_string(), value: String::from_utf8_lossy(h.value).into_owned() })
                        .collect(),
                };
            }
            Ok(httparse::Status::Partial) if bytes.len() < MAX_REQUEST => {}
            _ => break,
        }
    }
    HttpRequest { method: String::new(), path: String::new(), headers: Vec::new() }
}

/// An HTTP/1.1 response that closes its connection, as the server writes it.
fn response_bytes(r: &HttpResponse) -> Vec<u8> {
    let reason = http::StatusCode::from_u16(r.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", r.status);
    for h in r.headers.iter().filter(|h| !h.key.eq_ignore_ascii_case("connection")) {
        out.push_str(&format!("{}: {}\r\n", h.key, h.value));
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&r.body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_written_as_http_1_1_that_closes() {
        let r = HttpResponse { status: 404, headers: vec![KeyValue { key: "Content-Length".into(), value: "2".into() }], body: b"no".to_vec() };
        assert_eq!(String::from_utf8(response_bytes(&r)).expect("utf-8"), "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno");
    }
}
