//! `kubectl port-forward` (pkg/kubelet/cri/streaming/portforward). Over SPDY
//! (`portforward.k8s.io`) the client opens a data and an error stream per connection it
//! forwards, paired by `requestid` and naming the pod's `port`. Over WebSocket (what kube-rs
//! and the Python client speak) the ports are the query's (`?port=80&port=8080`), and each
//! gets one connection for the socket's life on channels 2n (data) and 2n+1 (error), each
//! opened with its port as two little-endian bytes. Either way each connection carries one
//! HTTP request to what the pod's images serve (the plugin answers it); a port nothing listens
//! on gets the runtime's refusal on the error stream, which kubectl prints.

use super::remotecommand::Output;
use super::spdy::{Connection, Stream, frame};
use super::websocket;
use crate::runtime::{ContainerRuntime, HttpRequest, HttpResponse, KeyValue};
use axum::extract::ws::WebSocket;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The one protocol over SPDY.
pub const PROTOCOL: &str = "portforward.k8s.io";

/// The channel protocols over WebSocket (upstream's v4 ones; none offered is the binary one).
pub const WEBSOCKET_PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"];

/// The most ports one WebSocket forwards: two channels each, numbered by a byte.
const MAX_PORTS: usize = 128;

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

/// One forwarded connection over SPDY.
async fn forward(runtime: Arc<dyn ContainerRuntime>, sandbox: String, mut data: Stream, error: Stream) {
    let port = frame::header(&data.headers, "port").unwrap_or_default().to_string();
    let (data_out, error_out) = (Output::Spdy(data.writer), Output::Spdy(error.writer));
    match port.parse::<u16>() {
        Ok(port) if port > 0 => connect(&*runtime, &sandbox, port, &mut data.incoming, &data_out, &error_out).await,
        _ => error_out.write(format!("invalid port {port:?}").as_bytes()).await,
    }
    data_out.finish().await;
    error_out.finish().await;
}

/// The ports a WebSocket port-forward names (`port`, repeated or comma-separated), or why the
/// kubelet refuses it (400), in its words.
pub fn ports(query: &[(String, String)]) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (_, value) in query.iter().filter(|(k, _)| k == "port") {
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in value.split(',') {
            let port: u16 = p.parse().map_err(|e| format!("unable to parse {value:?} as a port: strconv.ParseUint: parsing {p:?}: {e}"))?;
            if port < 1 {
                return Err(format!("port {value:?} must be > 0"));
            }
            ports.push(port);
        }
    }
    match ports.len() {
        0 => Err("query parameter \"port\" is required".into()),
        n if n > MAX_PORTS => Err(format!("{n} ports asked: at most {MAX_PORTS} are forwarded at once")),
        _ => Ok(ports),
    }
}

/// Serves a WebSocket port-forward of `ports` to sandbox `sandbox`: each port's one
/// connection, then the close once every one has ended (or the client went away).
pub async fn serve_websocket(socket: WebSocket, protocol: &'static str, runtime: Arc<dyn ContainerRuntime>, sandbox: String, ports: Vec<u16>) {
    let mut inputs = Vec::new();
    let mut incoming = Vec::new();
    let mut first = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        inputs.extend([Some(tx), None]);
        incoming.push(rx);
        let data = u8::try_from(2 * i).unwrap_or(u8::MAX);
        let bytes = Bytes::copy_from_slice(&port.to_le_bytes());
        first.extend([(data, bytes.clone()), (data.saturating_add(1), bytes)]);
    }
    let mut session = websocket::serve(socket, protocol, first, inputs);
    let connections = ports.iter().zip(incoming).enumerate().map(|(i, (&port, mut rx))| {
        let data = u8::try_from(2 * i).unwrap_or(u8::MAX);
        let (data_out, error_out) = (Output::WebSocket(session.channel(data)), Output::WebSocket(session.channel(data.saturating_add(1))));
        let (runtime, sandbox) = (runtime.clone(), sandbox.clone());
        async move { connect(&*runtime, &sandbox, port, &mut rx, &data_out, &error_out).await }
    });
    let all = futures_util::future::join_all(connections);
    tokio::select! {
        _ = all => {}
        () = session.gone() => {}
    }
    session.close().await;
}

/// One forwarded connection to `port` of the sandbox: the request read from `incoming`, the
/// server's answer on `data`, or the runtime's refusal on `error`.
async fn connect(runtime: &dyn ContainerRuntime, sandbox: &str, port: u16, incoming: &mut mpsc::Receiver<Bytes>, data: &Output, error: &Output) {
    let request = read_request(incoming).await;
    match runtime.serve_http(sandbox, port, &request).await {
        Ok(response) => data.write(&response_bytes(&response)).await,
        Err(e) => error.write(format!("error forwarding port {port} to pod {sandbox}, uid : {e}").as_bytes()).await,
    }
}

/// The request the client sends, as far as its head; bytes that are no HTTP request give a
/// request without a method, which a server answers with 400.
async fn read_request(incoming: &mut mpsc::Receiver<Bytes>) -> HttpRequest {
    let mut bytes = Vec::new();
    while let Some(chunk) = incoming.recv().await {
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
    fn websocket_ports_are_the_querys_as_the_kubelet_reads_them() {
        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        assert_eq!(ports(&q(&[("port", "80"), ("port", "8080,9090")])), Ok(vec![80, 8080, 9090]));
        assert_eq!(ports(&q(&[])), Err("query parameter \"port\" is required".into()));
        assert_eq!(ports(&q(&[("port", "")])), Err("query parameter \"port\" cannot be empty".into()));
        assert_eq!(ports(&q(&[("port", "0")])), Err("port \"0\" must be > 0".into()));
        assert!(ports(&q(&[("port", "http")])).is_err_and(|e| e.starts_with("unable to parse \"http\" as a port")));
        assert!(ports(&q(&[("port", "70000")])).is_err());
        let many = (1..=129).map(|p| p.to_string()).collect::<Vec<_>>().join(",");
        assert!(ports(&q(&[("port", &many)])).is_err(), "channels are numbered by a byte");
    }

    #[test]
    fn a_response_is_written_as_http_1_1_that_closes() {
        let r = HttpResponse { status: 404, headers: vec![KeyValue { key: "Content-Length".into(), value: "2".into() }], body: b"no".to_vec() };
        assert_eq!(String::from_utf8(response_bytes(&r)).expect("utf-8"), "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno");
    }
}
