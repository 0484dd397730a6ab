//! HTTP(S) sources: a file, with conditional requests, or a JSON API whose rows are followed
//! page by page into one NDJSON file.

use futures::StreamExt;
use reqwest::header::{CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LINK};

use crate::{AddressPolicy, ConnectError, FetchConfig, Fetched, Secrets, SourceOptions, SourceState, Staging, extension};

/// The largest page of a JSON API read into memory.
const MAX_PAGE_BYTES: usize = 256 << 20;

async fn client(config: &FetchConfig, url: &url::Url) -> Result<reqwest::Client, ConnectError> {
    client_for(&config.addresses, url, config.timeout).await
}

/// A client that reaches `url`'s host only at the address `addresses` checked, follows no
/// redirect and gives up after `timeout`.
async fn client_for(addresses: &AddressPolicy, url: &url::Url, timeout: std::time::Duration) -> Result<reqwest::Client, ConnectError> {
    let (host, addr) = checked_address(addresses, url).await?;
    pinned(&host, addr, timeout)
}

/// `url`'s host and the address it resolves to, checked.
async fn checked_address(addresses: &AddressPolicy, url: &url::Url) -> Result<(String, std::net::SocketAddr), ConnectError> {
    let host = url.host_str().ok_or_else(|| ConnectError::invalid("source", "the URL names no host"))?;
    let port = url.port_or_known_default().unwrap_or(443);
    Ok((host.to_string(), addresses.resolve(host, port).await?))
}

/// A client that reaches `host` only at `addr`, follows no redirect and gives up after `timeout`.
fn pinned(host: &str, addr: std::net::SocketAddr, timeout: std::time::Duration) -> Result<reqwest::Client, ConnectError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10).min(timeout))
        .timeout(timeout)
        .user_agent(concat!("tverr/", env!("CARGO_PKG_VERSION")))
        .resolve(host.trim_start_matches('[').trim_end_matches(']'), addr)
        .build()
        .map_err(|e| ConnectError::Source(format!("cannot make an HTTP client: {e}")))
}

fn request(client: &reqwest::Client, url: &url::Url, secrets: &Secrets) -> Result<reqwest::RequestBuilder, ConnectError> {
    let mut clean = url.clone();
    let user = url.username().to_string();
    let _ = clean.set_username("");
    let mut r = client.get(clean);
    for (name, value) in &secrets.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConnectError::invalid("header", format!("{name:?} is not a header name")))?;
        let value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| ConnectError::invalid("header", format!("the value of {name} is not a header value")))?;
        r = r.header(name, value);
    }
    if !user.is_empty() || secrets.password.is_some() {
        r = r.basic_auth(user, secrets.password.clone());
    }
    Ok(r)
}

fn shown(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    u.set_query(None);
    u.to_string()
}

async fn send(r: reqwest::RequestBuilder, url: &url::Url) -> Result<reqwest::Response, ConnectError> {
    let response = r.send().await.map_err(|e| ConnectError::Source(format!("cannot reach {}: {}", shown(url), reason(&e))))?;
    let status = response.status();
    if status.is_redirection() && status != reqwest::StatusCode::NOT_MODIFIED {
        let to = response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("?");
        return Err(ConnectError::Source(format!(
            "{} answered HTTP {} to {to}; give the connector the final URL (redirects are not followed)",
            shown(url),
            status.as_u16()
        )));
    }
    if !status.is_success() && status != reqwest::StatusCode::NOT_MODIFIED {
        return Err(ConnectError::Source(format!("{} answered HTTP {}", shown(url), status.as_u16())));
    }
    Ok(response)
}

fn reason(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

fn header(r: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn format_of(options: &SourceOptions, content_type: Option<&str>, url: &url::Url) -> &'static str {
    if let Some(ext) = options.format.as_deref().and_then(extension) {
        return ext;
    }
    let mime = content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let by_mime = match mime.as_str() {
        "text/csv" => Some("csv"),
        "text/tab-separated-values" => Some("tsv"),
        "application/geo+json" => Some("geojson"),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Some("ndjson"),
        "application/json" => Some("json"),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => Some("xlsx"),
        "application/vnd.apache.parquet" | "application/x-parquet" => Some("parquet"),
        _ => None,
    };
    by_mime
        .or_else(|| {
            let last = url.path_segments().and_then(|mut s| s.next_back()).unwrap_or("");
            last.rsplit_once('.').and_then(|(_, e)| extension(&e.to_ascii_lowercase()))
        })
        .unwrap_or("data")
}

fn file_name(url: &url::Url, ext: &str) -> String {
    let last = url.path_segments().and_then(|mut s| s.next_back()).filter(|s| !s.is_empty()).unwrap_or("kilde");
    let stem = last.rsplit_once('.').map(|(s, _)| s).unwrap_or(last);
    let stem: String = stem.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).take(60).collect();
    format!("{}.{ext}", if stem.is_empty() { "kilde" } else { &stem })
}

pub(crate) async fn fetch(
    config: &FetchConfig,
    url: &url::Url,
    options: &SourceOptions,
    secrets: &Secrets,
    state: &SourceState,
) -> Result<Fetched, ConnectError> {
    if options.pointer.is_some() {
        return fetch_pages(config, url, options, secrets, state).await;
    }
    let client = client(config, url).await?;
    let mut r = request(&client, url, secrets)?;
    if let Some(etag) = &state.etag {
        r = r.header(IF_NONE_MATCH, etag);
    } else if let Some(at) = &state.last_modified {
        r = r.header(IF_MODIFIED_SINCE, at);
    }
    let response = send(r, url).await?;
    if response.status() == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::Unchanged);
    }
    let etag = header(&response, ETAG);
    let last_modified = header(&response, LAST_MODIFIED);
    let ext = format_of(options, header(&response, CONTENT_TYPE).as_deref(), url);
    let mut staging = Staging::create(file_name(url, ext), config.max_bytes).await?;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ConnectError::Source(format!("reading {}: {}", shown(url), reason(&e))))?;
        staging.write(&chunk).await?;
    }
    let next = SourceState { etag, last_modified, ..SourceState::default() };
    Ok(Fetched::Deliveries(vec![staging.finish(next, state, true).await?]))
}

/// The `rel="next"` target of a `Link` header.
fn link_next(value: &str) -> Option<String> {
    value.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| target.to_string())
    })
}

async fn fetch_pages(
    config: &FetchConfig,
    first: &url::Url,
    options: &SourceOptions,
    secrets: &Secrets,
    state: &SourceState,
) -> Result<Fetched, ConnectError> {
    let pointer = options.pointer.as_deref().unwrap_or("");
    let client = client(config, first).await?;
    let mut staging = Staging::create(file_name(first, "ndjson"), config.max_bytes).await?;
    let mut url = first.clone();
    let mut seen = std::collections::HashSet::new();
    let mut pages = 0usize;
    loop {
        pages += 1;
        if pages > config.max_pages {
            return Err(ConnectError::Source(format!("{} has more than {} pages", shown(first), config.max_pages)));
        }
        if !seen.insert(url.to_string()) {
            return Err(ConnectError::Source(format!("page {pages} of {} links back to an earlier page", shown(first))));
        }
        let response = send(request(&client, &url, secrets)?, &url).await?;
        let link = header(&response, LINK);
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ConnectError::Source(format!("reading {}: {}", shown(&url), reason(&e))))?;
            if body.len() + chunk.len() > MAX_PAGE_BYTES {
                return Err(ConnectError::Source(format!("page {pages} of {} is larger than {MAX_PAGE_BYTES} bytes", shown(first))));
            }
            body.extend_from_slice(&chunk);
        }
        let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            ConnectError::Source(format!("page {pages} of {} is not JSON: line {}, column {}: {e}", shown(first), e.line(), e.column()))
        })?;
        let rows = json
            .pointer(pointer)
            .and_then(|v| v.as_array())
            .ok_or_else(|| ConnectError::Source(format!("page {pages} of {} has no array of rows at {pointer:?}", shown(first))))?;
        for row in rows {
            let mut line = serde_json::to_vec(row).map_err(|e| ConnectError::Source(e.to_string()))?;
            line.push(b'\n');
            staging.write(&line).await?;
        }
        let next = options
            .next
            .as_deref()
            .and_then(|p| json.pointer(p))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or_else(|| link.as_deref().and_then(link_next));
        let Some(next) = next else { break };
        let next = url.join(&next).map_err(|e| ConnectError::Source(format!("page {pages}'s next link {next:?}: {e}")))?;
        if next.origin() != first.origin() {
            return Err(ConnectError::Source(format!("page {pages}'s next link leaves {}", first.origin().ascii_serialization())));
        }
        url = next;
    }
    Ok(Fetched::Deliveries(vec![staging.finish(SourceState::default(), state, true).await?]))
}

/// Sends webhooks, keeping one client (and its connections) per receiver host and checked
/// address.
#[derive(Debug, Default)]
pub struct Poster {
    clients: std::sync::Mutex<std::collections::HashMap<(String, std::net::SocketAddr), reqwest::Client>>,
}

impl Poster {
    /// POSTs `body` as JSON to `url` (a webhook), with `headers`, reaching only an address
    /// `addresses` allows (the name is resolved and checked every time) and following no
    /// redirect; the receiver's status. The answer's body is not read.
    pub async fn post_json(
        &self,
        addresses: &AddressPolicy,
        url: &url::Url,
        headers: &[(&str, String)],
        body: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<u16, ConnectError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConnectError::invalid("url", "only http and https URLs can receive events"));
        }
        let (host, addr) = checked_address(addresses, url).await?;
        let key = (host.clone(), addr);
        let kept = self.clients.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        let failed = |e: reqwest::Error| ConnectError::Source(format!("cannot reach {}: {}", shown(url), reason(&e)));
        if let Some(client) = kept {
            match post(&client, url, headers, body.clone()).await {
                Ok(status) => return Ok(status),
                // A kept connection the receiver closed meanwhile: once more on a new one.
                Err(e) if !e.is_timeout() => {}
                Err(e) => return Err(failed(e)),
            }
        }
        let client = pinned(&host, addr, timeout)?;
        {
            let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            if clients.len() > 1024 {
                clients.clear();
            }
            clients.insert(key, client.clone());
        }
        post(&client, url, headers, body).await.map_err(failed)
    }
}

async fn post(client: &reqwest::Client, url: &url::Url, headers: &[(&str, String)], body: Vec<u8>) -> Result<u16, reqwest::Error> {
    let mut r = client.post(url.clone()).header(CONTENT_TYPE, "application/json").body(body);
    for (name, value) in headers {
        r = r.header(*name, value);
    }
    Ok(r.send().await?.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_and_formats_are_read() {
        assert_eq!(
            link_next(r#"<https://x.no/p?page=2>; rel="next", <https://x.no/p?page=9>; rel="last""#).as_deref(),
            Some("https://x.no/p?page=2")
        );
        assert_eq!(link_next(r#"<https://x.no/p?page=1>; rel="prev""#), None);
        let u = url::Url::parse("https://x.no/eksport/eiendomsskatt.csv?key=1").unwrap();
        assert_eq!(format_of(&SourceOptions::default(), Some("application/octet-stream"), &u), "csv");
        assert_eq!(format_of(&SourceOptions::default(), Some("application/json; charset=utf-8"), &u), "json");
        assert_eq!(file_name(&u, "csv"), "eiendomsskatt.csv");
        assert_eq!(shown(&u), "https://x.no/eksport/eiendomsskatt.csv");
    }
}
