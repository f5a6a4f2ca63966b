//! A minimal blocking HTTP/1.1 client for JSON requests to the broker's HTTP API.
//!
//! The freshness poller sends a small request every few milliseconds to one address, so it keeps
//! one persistent connection (reconnecting once when the server has closed it) instead of
//! pulling an async HTTP stack into a load generator. Bodies are delimited by Content-Length or
//! chunked transfer coding; anything else is refused rather than guessed.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// The `error.reason` of an error answer, else the whole answer.
fn error_reason(answer: &Value) -> String {
    answer
        .pointer("/error/reason")
        .and_then(Value::as_str)
        .map_or_else(|| answer.to_string(), str::to_string)
}

/// Largest response body accepted, so a misdirected request cannot exhaust memory.
const MAX_BODY: usize = 64 << 20;

/// A keep-alive connection to one `host:port`.
pub struct JsonClient {
    address: String,
    timeout: Duration,
    connection: Option<BufReader<TcpStream>>,
}

impl JsonClient {
    pub fn new(address: &str, timeout: Duration) -> JsonClient {
        JsonClient {
            address: address.to_string(),
            timeout,
            connection: None,
        }
    }

    /// POSTs `body` as JSON to `path`; the parsed answer of a 200, else an error with the
    /// status and the broker's reason.
    pub fn post(&mut self, path: &str, body: &Value) -> Result<Value> {
        let body = serde_json::to_vec(body).context("encoding request")?;
        self.request("POST", path, &body)
    }

    /// GETs `path`, answered as [`JsonClient::post`] is.
    pub fn get(&mut self, path: &str) -> Result<Value> {
        self.request("GET", path, &[])
    }

    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Result<Value> {
        // A reused connection the server closed in between fails on first use: retry once on a
        // fresh one.
        let reused = self.connection.is_some();
        let (status, answer) = match self.exchange(method, path, body) {
            Err(_) if reused => {
                self.connection = None;
                self.exchange(method, path, body)?
            }
            other => other?,
        };
        if status != 200 {
            bail!(
                "{method} {path}: status {status}: {}",
                error_reason(&answer)
            );
        }
        Ok(answer)
    }

    fn exchange(&mut self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Value)> {
        if self.connection.is_none() {
            let stream = TcpStream::connect(&self.address)
                .with_context(|| format!("connecting to {}", self.address))?;
            stream.set_read_timeout(Some(self.timeout))?;
            stream.set_write_timeout(Some(self.timeout))?;
            stream.set_nodelay(true)?;
            self.connection = Some(BufReader::new(stream));
        }
        let result = self.exchange_on_open(method, path, body);
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    fn exchange_on_open(&mut self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Value)> {
        let address = self.address.clone();
        let reader = self.connection.as_mut().expect("connected");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Accept: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let stream = reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        stream.flush()?;

        let response = read_response(reader)?;
        if response.close {
            self.connection = None;
        }
        let value = serde_json::from_slice(&response.body).with_context(|| {
            format!(
                "POST {path}: status {}, body is not JSON: {}",
                response.status,
                String::from_utf8_lossy(&response.body[..response.body.len().min(200)])
            )
        })?;
        Ok((response.status, value))
    }
}

/// One parsed response.
#[derive(Debug)]
struct Response {
    status: u16,
    body: Vec<u8>,
    /// The server will close the connection after this response.
    close: bool,
}

fn read_response(reader: &mut impl BufRead) -> Result<Response> {
    let status_line = read_line(reader)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1 response: {status_line:?}");
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = version == "HTTP/1.0";
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            bail!("bad header line {line:?}");
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| anyhow!("bad Content-Length {value:?}"))?;
                if n > MAX_BODY {
                    bail!("response body of {n} bytes is too large");
                }
                length = Some(n);
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(reader)?
    } else if let Some(n) = length {
        let mut body = vec![0u8; n];
        reader.read_exact(&mut body).context("reading body")?;
        body
    } else {
        bail!("response has neither Content-Length nor chunked coding")
    };
    Ok(Response {
        status,
        body,
        close,
    })
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size, 16).map_err(|_| anyhow!("bad chunk size {line:?}"))?;
        if size == 0 {
            // Trailers, then the empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            bail!("chunked response body is too large");
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader)?.is_empty() {
            bail!("chunk not followed by CRLF");
        }
    }
}

fn read_line(reader: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    let n = reader.read_line(&mut line).context("reading response")?;
    if n == 0 {
        bail!("connection closed before the response was complete");
    }
    if line.len() > 16 * 1024 {
        bail!("response line too long");
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_body_is_read_exactly_and_the_next_response_follows() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n{\"a\":1}HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
        let mut reader = &raw[..];
        let first = read_response(&mut reader).expect("first");
        assert_eq!(
            (first.status, first.body.as_slice(), first.close),
            (200, &b"{\"a\":1}"[..], false)
        );
        let second = read_response(&mut reader).expect("second");
        assert_eq!(
            (second.status, second.body.as_slice(), second.close),
            (404, &b"{}"[..], true)
        );
    }

    #[test]
    fn chunked_body_is_reassembled() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n";
        let response = read_response(&mut &raw[..]).expect("response");
        assert_eq!(response.body, b"{\"a\":1}");
    }

    #[test]
    fn truncated_or_undelimited_responses_are_errors() {
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}";
        assert!(read_response(&mut &short[..]).is_err());
        let undelimited = b"HTTP/1.1 200 OK\r\n\r\n{}";
        assert!(read_response(&mut &undelimited[..]).is_err());
        let garbage = b"SSH-2.0-OpenSSH\r\n\r\n";
        assert!(read_response(&mut &garbage[..]).is_err());
    }
}
