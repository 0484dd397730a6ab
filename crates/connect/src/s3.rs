//! S3 prefixes: `s3://BUCKET/PREFIX/` (on AWS, or on any S3-compatible server given by
//! `?endpoint=`), each new object one delivery, oldest first. An object is new when it was
//! written after the newest one already delivered (by its time, then its key): objects are never
//! moved or deleted, the source stays as it was. Names starting with `.` or ending in `.part` or
//! `.tmp` are still being written and wait. Only the objects right under the prefix are read.
//!
//! Every request goes to the address the endpoint's name resolved to and was checked at
//! (`AddressPolicy`), through a client that follows no redirect.

use std::sync::Arc;

use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt};

use crate::{ConnectError, FetchConfig, Fetched, Secrets, SourceState, Staging, percent_decode};

/// The most objects one run delivers; the rest wait for the next.
const MAX_OBJECTS_PER_RUN: usize = 1000;

/// A connector for object_store that reaches only the checked address.
#[derive(Debug)]
struct Pinned {
    host: String,
    addr: std::net::SocketAddr,
    timeout: std::time::Duration,
}

impl object_store::client::HttpConnector for Pinned {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<object_store::client::HttpClient> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(10).min(self.timeout))
            .timeout(self.timeout)
            .user_agent(concat!("tverr/", env!("CARGO_PKG_VERSION")))
            .resolve(&self.host, self.addr)
            .build()
            .map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?;
        Ok(object_store::client::HttpClient::new(client))
    }
}

/// The bucket, the prefix (empty, or ending in `/`), the endpoint and the region of a source URL.
pub(crate) struct Location {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<url::Url>,
    pub region: String,
}

/// Reads an `s3://` URL: a bucket, a prefix ending in `/`, and no parameter but `endpoint` (an
/// http(s) address without a path) and `region`.
pub(crate) fn location(url: &url::Url) -> Result<Location, ConnectError> {
    let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| ConnectError::invalid("source", "the URL names no bucket"))?;
    let prefix = percent_decode(url.path().trim_start_matches('/'));
    if !prefix.is_empty() && !prefix.ends_with('/') {
        return Err(ConnectError::invalid("source", "an S3 source is s3://bucket/prefix/ (ending in /)"));
    }
    let mut endpoint = None;
    let mut region = "us-east-1".to_string();
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "endpoint" => {
                let e = url::Url::parse(&v).map_err(|e| ConnectError::invalid("source", format!("endpoint {v:?}: {e}")))?;
                if !matches!(e.scheme(), "http" | "https") || e.host_str().is_none() || !matches!(e.path(), "" | "/") || e.query().is_some()
                {
                    return Err(ConnectError::invalid("source", format!("endpoint {v:?}: give http(s)://host[:port] without a path")));
                }
                if !e.username().is_empty() || e.password().is_some() {
                    return Err(ConnectError::invalid("source", "the endpoint takes no user or password; give them in the source URL"));
                }
                endpoint = Some(e);
            }
            "region" if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => region = v.into_owned(),
            other => {
                return Err(ConnectError::invalid(
                    "source",
                    format!("an S3 source takes no parameter {other:?} (or that value): only endpoint and region"),
                ));
            }
        }
    }
    if url.fragment().is_some() {
        return Err(ConnectError::invalid("source", "an S3 source has no #fragment"));
    }
    Ok(Location { bucket: bucket.to_string(), prefix, endpoint, region })
}

/// What the watermark says: the newest delivered object's time (RFC 3339) and key.
fn watermark(state: &SourceState) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
    let (at, key) = state.watermark.as_deref()?.split_once(' ')?;
    Some((chrono::DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&chrono::Utc), key.to_string()))
}

fn waits(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp") || name.is_empty()
}

pub(crate) async fn fetch(config: &FetchConfig, url: &url::Url, secrets: &Secrets, state: &SourceState) -> Result<Fetched, ConnectError> {
    let loc = location(url)?;
    let endpoint = loc.endpoint.clone().unwrap_or_else(|| {
        url::Url::parse(&format!("https://s3.{}.amazonaws.com", loc.region)).expect("a region of letters, digits and -")
    });
    let host = endpoint.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = endpoint.port_or_known_default().unwrap_or(443);
    let addr = config.addresses.resolve(&host, port).await?;
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&loc.bucket)
        .with_region(&loc.region)
        .with_endpoint(endpoint.as_str().trim_end_matches('/'))
        .with_allow_http(endpoint.scheme() == "http")
        .with_virtual_hosted_style_request(false)
        .with_retry(object_store::RetryConfig { max_retries: 2, ..Default::default() })
        .with_http_connector(Pinned { host, addr, timeout: config.timeout });
    let key_id = percent_decode(url.username());
    builder = match (&key_id, &secrets.password) {
        (k, Some(secret)) if !k.is_empty() => builder.with_access_key_id(k).with_secret_access_key(secret),
        _ => builder.with_skip_signature(true),
    };
    let store: Arc<dyn ObjectStore> = Arc::new(builder.build().map_err(|e| ConnectError::Source(format!("S3: {e}")))?);
    let shown = format!("s3://{}/{}", loc.bucket, loc.prefix);
    let prefix = (!loc.prefix.is_empty()).then(|| Path::from(loc.prefix.trim_end_matches('/')));
    let listed = store.list_with_delimiter(prefix.as_ref()).await.map_err(|e| ConnectError::Source(format!("cannot list {shown}: {e}")))?;
    let after = watermark(state);
    let mut new: Vec<_> = listed
        .objects
        .into_iter()
        .filter(|o| !waits(o.location.filename().unwrap_or_default()))
        .filter(|o| after.as_ref().is_none_or(|(at, key)| (o.last_modified, o.location.to_string()) > (*at, key.clone())))
        .collect();
    new.sort_by(|a, b| (a.last_modified, a.location.as_ref()).cmp(&(b.last_modified, b.location.as_ref())));
    new.truncate(MAX_OBJECTS_PER_RUN);
    if new.is_empty() {
        return Ok(Fetched::Unchanged);
    }
    let mut total = 0u64;
    let mut deliveries = Vec::with_capacity(new.len());
    for object in new {
        total = total.saturating_add(object.size);
        if total > config.max_bytes {
            if deliveries.is_empty() {
                return Err(ConnectError::Source(format!(
                    "{} is larger than a fetch may be ({} bytes)",
                    object.location, config.max_bytes
                )));
            }
            break;
        }
        let name = object.location.filename().unwrap_or("objekt").to_string();
        let mut staging = Staging::create(name, config.max_bytes).await?;
        let got = store.get(&object.location).await.map_err(|e| ConnectError::Source(format!("cannot read {}: {e}", object.location)))?;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ConnectError::Source(format!("reading {}: {e}", object.location)))?;
            staging.write(&chunk).await?;
        }
        let next = SourceState {
            watermark: Some(format!("{} {}", object.last_modified.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true), object.location)),
            ..SourceState::default()
        };
        // Each object is new by its name and time, whatever its bytes: never compared away.
        deliveries.push(staging.finish(next, state, false).await?);
    }
    Ok(Fetched::Deliveries(deliveries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_url_is_a_bucket_a_prefix_and_two_parameters() {
        let l =
            location(&url::Url::parse("s3://leveranser/hias/malere/?endpoint=http://127.0.0.1:9000&region=eu-north-1").unwrap()).unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str(), l.region.as_str()), ("leveranser", "hias/malere/", "eu-north-1"));
        assert_eq!(l.endpoint.unwrap().as_str(), "http://127.0.0.1:9000/");
        assert_eq!(location(&url::Url::parse("s3://b/").unwrap()).unwrap().prefix, "");
        for bad in [
            "s3://b/prefix",
            "s3://b/p/?endpoint=file:///etc",
            "s3://b/p/?endpoint=http://h/sti",
            "s3://b/p/?endpoint=http://u:p@h",
            "s3://b/p/?region=eu%20north",
            "s3://b/p/?socket=/x",
            "s3://b/p/#x",
        ] {
            assert!(location(&url::Url::parse(bad).unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_watermark_orders_by_time_then_key() {
        let s = SourceState { watermark: Some("2026-12-07T10:00:00.5Z hias/malere/b.csv".into()), ..SourceState::default() };
        let (at, key) = watermark(&s).unwrap();
        assert_eq!(key, "hias/malere/b.csv");
        assert!((at, "hias/malere/c.csv".to_string()) > (at, key.clone()));
        assert!(waits(".skjult.csv") && waits("a.csv.part") && waits("a.tmp") && !waits("a.csv"));
    }
}
