//! Host overrides for the lab: a probe written for the cluster
//! (`http://talk-load.talk:8080/sli`) is sent to a local address instead.

use std::collections::HashMap;
use std::net::SocketAddr;

use reqwest::header::HeaderValue;
use url::Url;

use crate::error::Error;

/// Host name → address. The client resolves the names (so the URL keeps its host); only the
/// port is rewritten here, because reqwest always connects to the port written in the URL.
#[derive(Debug, Default)]
pub(crate) struct Routes(HashMap<String, SocketAddr>);

/// A URL ready to send, and the `Host` header to send with it when the port was rewritten.
#[derive(Debug)]
pub(crate) struct Target {
    pub url: Url,
    pub host_header: Option<HeaderValue>,
}

impl Routes {
    pub fn new(hosts: HashMap<String, SocketAddr>) -> Self {
        Self(hosts)
    }

    /// Whether requests for `host` go to an override rather than through DNS.
    pub fn overrides(&self, host: &str) -> bool {
        self.0.contains_key(&host.to_ascii_lowercase())
    }

    pub fn target(&self, written: &Url) -> Result<Target, Error> {
        let bad = |reason: &str| Error::BadUrl {
            url: written.to_string(),
            reason: reason.to_owned(),
        };
        match written.scheme() {
            "http" => {}
            // Built without TLS: say so instead of a transport error.
            "https" => return Err(bad("https is not supported by this build (no TLS)")),
            _ => return Err(bad("only http URLs can be probed")),
        }
        let host = written.host_str().ok_or_else(|| bad("it has no host"))?;
        let mut url = written.clone();
        let mut host_header = None;
        if let Some(addr) = self.0.get(&host.to_ascii_lowercase())
            && written.port_or_known_default() != Some(addr.port())
        {
            let authority = match written.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            };
            host_header = Some(
                HeaderValue::from_str(&authority).map_err(|_| bad("its host is not a header"))?,
            );
            url.set_port(Some(addr.port()))
                .map_err(|()| bad("its port cannot be changed"))?;
        }
        Ok(Target { url, host_header })
    }

    /// A request for `url` through the overrides.
    pub fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        url: &Url,
    ) -> Result<reqwest::RequestBuilder, Error> {
        let target = self.target(url)?;
        let mut request = client.request(method, target.url);
        if let Some(host) = target.host_header {
            request = request.header(reqwest::header::HOST, host);
        }
        Ok(request)
    }
}

/// Parses a URL written in a probe.
pub(crate) fn parse(url: &str) -> Result<Url, Error> {
    Url::parse(url).map_err(|e| Error::BadUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        let addr: SocketAddr = "127.0.0.1:41234".parse().expect("addr");
        Routes::new(HashMap::from([("talk-load.talk".to_owned(), addr)]))
    }

    #[test]
    fn rewrites_the_port_and_keeps_the_written_host() {
        let url = parse("http://talk-load.talk:8080/sli?x=1").expect("url");
        let t = routes().target(&url).expect("target");
        assert_eq!(t.url.as_str(), "http://talk-load.talk:41234/sli?x=1");
        assert_eq!(
            t.host_header.as_ref().and_then(|h| h.to_str().ok()),
            Some("talk-load.talk:8080")
        );
    }

    #[test]
    fn leaves_other_hosts_alone() {
        let url = parse("http://prometheus.monitoring:9090/").expect("url");
        let t = routes().target(&url).expect("target");
        assert_eq!(t.url, url);
        assert!(t.host_header.is_none());
    }

    #[test]
    fn matches_host_names_case_insensitively_and_default_ports() {
        let url = parse("http://Talk-Load.talk/sli").expect("url");
        let t = routes().target(&url).expect("target");
        assert_eq!(t.url.port(), Some(41234));
        assert_eq!(
            t.host_header.as_ref().and_then(|h| h.to_str().ok()),
            Some("talk-load.talk")
        );
    }

    #[test]
    fn refuses_https_and_other_schemes_with_a_reason() {
        let https = parse("https://example.invalid/").expect("url");
        let err = routes().target(&https).expect_err("https").to_string();
        assert!(err.contains("https is not supported"), "{err}");
        let ftp = parse("ftp://example.invalid/").expect("url");
        assert!(routes().target(&ftp).is_err());
    }
}
