//! A real SMTP server on loopback (mailin-embedded, in a thread), with scripted answers to the end
//! of DATA, optional STARTTLS with a throwaway CA, and AUTH PLAIN/LOGIN recorded.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mailin_embedded::response::{self, Response};
use mailin_embedded::{Action, AuthMechanism, Handler, Server, SslConfig};

#[derive(Default)]
pub struct SmtpState {
    /// Answers to the end of DATA, first to last (code, text); then 250.
    pub script: VecDeque<(u16, &'static str)>,
    /// Messages accepted, raw.
    pub accepted: Vec<Vec<u8>>,
    /// Ends of DATA seen (accepted or not).
    pub attempts: usize,
    /// (user, password) of each AUTH.
    pub logins: Vec<(String, String)>,
}

#[derive(Clone)]
struct SmtpHandler {
    state: Arc<Mutex<SmtpState>>,
    buf: Vec<u8>,
}

impl Handler for SmtpHandler {
    fn data_start(&mut self, _: &str, _: &str, _: bool, _: &[String]) -> Response {
        self.buf.clear();
        response::START_DATA
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mut s = self.state.lock().unwrap();
        s.attempts += 1;
        match s.script.pop_front() {
            Some((code, text)) => {
                // mailin stays in its DATA state after a rejection, so the client's RSET would go
                // unanswered; answering and then closing is what many real servers do.
                let mut r = Response::custom(code, text.to_string());
                r.action = Action::Close;
                r
            }
            None => {
                s.accepted.push(std::mem::take(&mut self.buf));
                response::OK
            }
        }
    }

    fn auth_plain(&mut self, _: &str, user: &str, password: &str) -> Response {
        self.state
            .lock()
            .unwrap()
            .logins
            .push((user.into(), password.into()));
        response::AUTH_OK
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        self.auth_plain("", user, password)
    }

    fn helo(&mut self, _: IpAddr, _: &str) -> Response {
        response::OK
    }
}

/// A running SMTP server; it lives until the test process ends.
pub struct Smtp {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<SmtpState>>,
}

/// PEM files of a throwaway CA and a server certificate it signed for `localhost`/`127.0.0.1`.
pub struct TestCerts {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCerts {
    pub fn create(dir: &Path) -> TestCerts {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tunewatch test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let certs = TestCerts {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        std::fs::write(&certs.ca, ca_cert.pem()).unwrap();
        std::fs::write(&certs.cert, cert.pem()).unwrap();
        std::fs::write(&certs.key, key.serialize_pem()).unwrap();
        certs
    }
}

impl Smtp {
    /// Starts a server; with `tls`, it offers STARTTLS with that certificate and accepts AUTH.
    pub fn start(tls: Option<&TestCerts>) -> Smtp {
        let state = Arc::new(Mutex::new(SmtpState::default()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut server = Server::new(SmtpHandler {
            state: state.clone(),
            buf: Vec::new(),
        });
        server.with_name("smtp.test").with_tcp_listener(listener);
        if let Some(c) = tls {
            server
                .with_ssl(SslConfig::SelfSigned {
                    cert_path: c.cert.display().to_string(),
                    key_path: c.key.display().to_string(),
                })
                .unwrap();
            server.with_auth(AuthMechanism::Plain);
        }
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Smtp { addr, state }
    }

    pub fn script(&self, answers: &[(u16, &'static str)]) {
        self.state.lock().unwrap().script.extend(answers);
    }

    pub fn accepted(&self) -> Vec<Vec<u8>> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn attempts(&self) -> usize {
        self.state.lock().unwrap().attempts
    }
}
