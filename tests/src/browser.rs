//! Headless Chromium (Debian's `chromium` package) driven over the DevTools protocol: a page is
//! opened, clicked with real mouse events and typed into, and its DOM read back. The client is
//! the few protocol calls the dashboard test needs, over one WebSocket.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The Chromium program: `USERPROV_CHROMIUM`, else `chromium` on the PATH, else a panic that
/// says how to install it.
pub fn chromium_program() -> PathBuf {
    if let Some(path) = std::env::var_os("USERPROV_CHROMIUM") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "chromium is missing. Install Debian's package with `apt-get install -y chromium` \
             (infra/scripts/install-test-peers.sh does it), or set USERPROV_CHROMIUM to a \
             Chromium or Chrome binary."
        )
    })
}

/// A headless Chromium with one page; killed when dropped.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: Socket,
    next_id: u64,
    /// Console errors, uncaught exceptions and refusals (such as CSP violations) seen so far.
    pub errors: Vec<String>,
}

impl Browser {
    /// Starts Chromium with a `width`×`height` viewport and attaches to its page.
    pub async fn start(width: u32, height: u32) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let program = chromium_program();
        let mut child = Command::new(&program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--mute-audio",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stderr = child.stderr.take().unwrap();
        let (found, endpoint) = std::sync::mpsc::channel();
        // Reads the DevTools address, then keeps draining stderr so Chromium never blocks on it.
        std::thread::spawn(move || {
            let mut printed = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = found.send(Ok(url.trim().to_owned()));
                } else if printed.len() < 50 {
                    printed.push(line);
                }
            }
            let _ = found.send(Err(printed.join("\n")));
        });
        let browser_url = match endpoint.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(url)) => url,
            Ok(Err(output)) => panic!("chromium exited before listening:\n{output}"),
            Err(_) => panic!("chromium did not open its DevTools port within 60 s"),
        };
        let host = browser_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let targets: Vec<Value> = reqwest::get(format!("http://{host}/json/list"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page_url = targets
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("chromium has no page: {targets:?}"))
            .to_owned();
        let (socket, _) = tokio_tungstenite::connect_async(page_url.as_str())
            .await
            .unwrap();
        let mut browser = Self {
            child,
            _profile: profile,
            socket,
            next_id: 0,
            errors: Vec::new(),
        };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({})).await;
        }
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await;
        browser
    }

    /// Sends one protocol command and returns its result; events that arrive meanwhile are
    /// kept when they report errors.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket
            .send(Message::Text(request.into()))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("chromium did not answer {method} within 60 s"))
                .unwrap_or_else(|| panic!("chromium closed the connection during {method}"))
                .unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if value["id"] == id {
                if let Some(error) = value.get("error") {
                    panic!("{method} failed: {error}");
                }
                return value["result"].clone();
            }
            self.note_event(&value);
        }
    }

    fn note_event(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => self.errors.push(format!(
                "exception: {}",
                params["exceptionDetails"]["exception"]["description"]
                    .as_str()
                    .or(params["exceptionDetails"]["text"].as_str())
                    .unwrap_or_default()
            )),
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                self.errors
                    .push(format!("console.error: {}", params["args"]));
            }
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                self.errors.push(format!(
                    "log ({}): {}",
                    params["entry"]["source"].as_str().unwrap_or_default(),
                    params["entry"]["text"].as_str().unwrap_or_default()
                ));
            }
            _ => {}
        }
    }

    /// Loads `url` and waits until its document has loaded.
    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for("document.readyState === 'complete'").await;
    }

    /// Evaluates a JavaScript expression in the page (promises awaited) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(details) = result.get("exceptionDetails") {
            panic!("{expression} threw: {details}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy and returns its value; a page that never gets there
    /// fails with its visible text.
    pub async fn wait_for(&mut self, expression: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.eval(expression).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let text = self
                    .eval("document.body ? document.body.innerText : ''")
                    .await;
                panic!(
                    "the page never satisfied {expression}; it shows:\n{}\nerrors: {:?}",
                    text.as_str().unwrap_or_default(),
                    self.errors
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the middle of the first element matching `selector` with real mouse events (moved,
    /// pressed, released), after scrolling it into view.
    pub async fn click(&mut self, selector: &str) {
        let selector_json = serde_json::to_string(selector).unwrap();
        let point = self
            .wait_for(&format!(
                "(() => {{ const e = document.querySelector({selector_json}); \
                 if (!e || e.offsetParent === null) return null; \
                 e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
                 return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
            ))
            .await;
        let (x, y) = (point[0].as_f64().unwrap(), point[1].as_f64().unwrap());
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }

    /// Clicks into the field matching `selector`, selects what it holds, and types `text` over
    /// it (an empty `text` deletes it with Backspace).
    pub async fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector).await;
        self.eval("document.activeElement.select && document.activeElement.select()")
            .await;
        if text.is_empty() {
            for kind in ["keyDown", "keyUp"] {
                self.call(
                    "Input.dispatchKeyEvent",
                    json!({"type": kind, "key": "Backspace", "code": "Backspace",
                           "windowsVirtualKeyCode": 8}),
                )
                .await;
            }
        } else {
            self.call("Input.insertText", json!({"text": text})).await;
        }
    }

    /// The text of the first element matching `selector` ("" when there is none).
    pub async fn text(&mut self, selector: &str) -> String {
        let selector_json = serde_json::to_string(selector).unwrap();
        self.eval(&format!(
            "(document.querySelector({selector_json}) || {{innerText: ''}}).innerText"
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
