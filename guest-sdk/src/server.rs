//! The servers a pod's images run, as far as `kubectl port-forward` reaches them: nginx and
//! Apache httpd answer HTTP on port 80, busybox's `httpd -p PORT -h DIR` on its port, each
//! from its document root over the container's files (an `index.html` mounted from a
//! ConfigMap is served), with the stock welcome page while the root has none and the stock
//! 404 page for what is not there. Nothing else listens: a connection is refused, as the
//! runtime's port forwarder reports it.

use crate::image::container_argv;
use crate::runtime::{ContainerRecord, FakeRuntime};
use crate::{ContainerState, ErrorCode, HttpRequest, HttpResponse, KeyValue, RuntimeError};

/// A web server a container runs.
struct WebServer<'a> {
    kind: Kind,
    port: u16,
    root: String,
    container: &'a ContainerRecord,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Nginx,
    Apache,
    Busybox,
}

/// The server `c` runs, read from its command line.
fn web_server(c: &ContainerRecord) -> Option<WebServer<'_>> {
    if c.state != ContainerState::Running {
        return None;
    }
    let argv = container_argv(&c.config.image, &c.config.command, &c.config.args, &c.config.env).ok()?;
    let program = argv.first()?.rsplit('/').next()?;
    let flag = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1));
    let (kind, port, root) = match program {
        "nginx" => (Kind::Nginx, 80, "/usr/share/nginx/html".to_string()),
        "httpd-foreground" => (Kind::Apache, 80, "/usr/local/apache2/htdocs".to_string()),
        "httpd" if crate::image::short_name(&c.config.image) == "httpd" => (Kind::Apache, 80, "/usr/local/apache2/htdocs".to_string()),
        "httpd" => {
            (Kind::Busybox, flag("-p").and_then(|p| p.rsplit(':').next()?.parse().ok()).unwrap_or(80), flag("-h").cloned().unwrap_or_else(|| "/".into()))
        }
        _ => return None,
    };
    Some(WebServer { kind, port, root, container: c })
}

/// What a connection to `port` of sandbox `sandbox` gets for `request`.
pub(crate) fn serve(rt: &FakeRuntime, sandbox: &str, port: u16, request: &HttpRequest) -> Result<HttpResponse, RuntimeError> {
    let server = rt.containers.values().filter(|c| c.sandbox_id == sandbox).filter_map(web_server).find(|s| s.port == port);
    let Some(server) = server else {
        return Err(RuntimeError { code: ErrorCode::Failed, message: format!("dial tcp4 127.0.0.1:{port}: connect: connection refused") });
    };
    Ok(server.answer(request))
}

impl WebServer<'_> {
    fn answer(&self, request: &HttpRequest) -> HttpResponse {
        let head = request.method == "HEAD";
        // Bytes that were no HTTP request.
        if request.method.is_empty() {
            return self.page(400, "400 Bad Request", false);
        }
        if request.method != "GET" && !head {
            return self.page(405, "405 Not Allowed", head);
        }
        let path = request.path.split(['?', '#']).next().unwrap_or("/");
        let mut file = format!("{}/{}", self.root.trim_end_matches('/'), path.trim_start_matches('/'));
        if file.ends_with('/') || self.container.fs.is_dir(&file) {
            file = format!("{}/index.html", file.trim_end_matches('/'));
        }
        match self.container.fs.read(&file) {
            Ok(body) => self.response(200, content_type(&file), body.to_vec(), head),
            Err(_) if path == "/" || path == "/index.html" => self.response(200, "text/html", self.welcome().into_bytes(), head),
            Err(_) => self.page(404, "404 Not Found", head),
        }
    }

    fn server_header(&self) -> String {
        let tag = self.container.config.image.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/'));
        match self.kind {
            Kind::Nginx => tag.map_or("nginx".into(), |t| format!("nginx/{t}")),
            Kind::Apache => tag.map_or("Apache".into(), |t| format!("Apache/{t} (Unix)")),
            Kind::Busybox => String::new(),
        }
    }

    fn welcome(&self) -> String {
        match self.kind {
            Kind::Nginx => concat!(
                "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n",
                "<p>If you see this page, the nginx web server is successfully installed and\nworking. Further configuration is required.</p>\n",
                "<p><em>Thank you for using nginx.</em></p>\n</body>\n</html>\n"
            )
            .to_string(),
            Kind::Apache => "<html><body><h1>It works!</h1></body></html>\n".to_string(),
            Kind::Busybox => self.error_body("404 Not Found"),
        }
    }

    fn error_body(&self, title: &str) -> String {
        match self.kind {
            Kind::Nginx => format!(
                "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>{}</center>\r\n</body>\r\n</html>\r\n",
                self.server_header()
            ),
            Kind::Apache => format!(
                "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>{title}</title>\n</head><body>\n<h1>{}</h1>\n</body></html>\n",
                &title[4..]
            ),
            Kind::Busybox => format!("<HTML><HEAD><TITLE>{title}</TITLE></HEAD>\n<BODY><H1>{title}</H1>\nThe requested URL was not found\n</BODY></HTML>\n"),
        }
    }

    fn page(&self, code: u16, title: &str, head: bool) -> HttpResponse {
        self.response(code, "text/html", self.error_body(title).into_bytes(), head)
    }

    fn response(&self, status: u16, content_type: &str, body: Vec<u8>, head: bool) -> HttpResponse {
        let mut headers = vec![KeyValue { key: "Content-Type".into(), value: content_type.into() }];
        let server = self.server_header();
        if !server.is_empty() {
            headers.insert(0, KeyValue { key: "Server".into(), value: server });
        }
        headers.push(KeyValue { key: "Content-Length".into(), value: body.len().to_string() });
        HttpResponse { status, headers, body: if head { Vec::new() } else { body } }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html" | "htm") => "text/html",
        Some("css") => "text/css",
        Some("js") => "application/javascript",
        Some("json") => "application/json",
        Some("txt") => "text/plain",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}
