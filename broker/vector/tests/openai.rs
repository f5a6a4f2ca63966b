//! The openai provider's HTTP behaviour (batching, retries, errors, auth) against a scripted
//! endpoint: an HTTP/1.1 listener answering each request with the next canned response, so
//! the rate limits and outages a real endpoint produces only by chance happen on cue. The
//! provider against a real OpenAI-compatible server (a second chronik-server's /v1/embeddings)
//! is tested end to end in e2e/test_embedding_provider.py.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronik_vector::{Backoff, EmbeddingProvider, OpenAiConfig, OpenAiProvider, VectorError};
use serde_json::{json, Value};

/// A request as the endpoint saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    body: Value,
}

/// A canned answer: status, extra headers, body. `Echo` answers with one vector per input,
/// `[input index, text length, 1.0]`, in reverse order with explicit indexes.
enum Answer {
    Status(u16, &'static str, String),
    Echo,
    /// Close the connection without answering.
    Hangup,
}

struct Endpoint {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn endpoint(script: Vec<Answer>) -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut script = script.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (mut length, mut authorization) = (0usize, None);
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap(),
                    "authorization" => authorization = Some(value.trim().to_string()),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap();
            log.lock().unwrap().push(Seen {
                path,
                authorization,
                body: body.clone(),
            });
            let (status, headers, text) = match script.next().unwrap_or(Answer::Echo) {
                Answer::Hangup => continue,
                Answer::Status(s, h, t) => (s, h, t),
                Answer::Echo => {
                    let inputs = body["input"].as_array().unwrap();
                    let data: Vec<Value> = inputs
                        .iter()
                        .enumerate()
                        .rev()
                        .map(|(i, t)| {
                            json!({"object": "embedding", "index": i,
                                   "embedding": [i as f32, t.as_str().unwrap().chars().count() as f32, 1.0]})
                        })
                        .collect();
                    (200, "", json!({"object": "list", "data": data}).to_string())
                }
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    Endpoint { url, seen }
}

fn provider(url: &str, tweak: impl FnOnce(&mut OpenAiConfig)) -> OpenAiProvider {
    let mut config = OpenAiConfig {
        endpoint: url.to_string(),
        model: "test-model".into(),
        timeout: Duration::from_secs(5),
        retry: Backoff {
            attempts: 4,
            first: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
        ..OpenAiConfig::default()
    };
    tweak(&mut config);
    OpenAiProvider::new(config).unwrap()
}

#[test]
fn batches_keep_input_order_and_learn_the_dimensions() {
    let ep = endpoint(vec![]);
    let p = provider(&ep.url, |c| {
        c.max_batch = 2;
        c.api_key = Some("sk-test".into());
    });
    assert_eq!(p.dimensions(), None);
    let texts = ["a", "bb", "", "dddd", "eeeee"];
    let vectors = p.embed(&texts).unwrap();
    // Each batch answered in reverse: the provider put every vector back in its input's place.
    let lengths: Vec<f32> = vectors.iter().map(|v| v[1]).collect();
    assert_eq!(lengths, vec![1.0, 2.0, 1.0, 4.0, 5.0]);
    assert_eq!(p.dimensions(), Some(3));
    let seen = ep.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "5 texts in batches of 2");
    for s in &seen {
        assert_eq!(s.path, "/v1/embeddings");
        assert_eq!(s.authorization.as_deref(), Some("Bearer sk-test"));
        assert_eq!(s.body["model"], "test-model");
        assert_eq!(s.body["encoding_format"], "float");
        assert!(s.body.get("dimensions").is_none());
    }
    // OpenAI refuses empty inputs: an empty text is sent as a space.
    assert_eq!(seen[1].body["input"], json!([" ", "dddd"]));
}

#[test]
fn rate_limits_and_outages_are_retried_with_backoff() {
    let ep = endpoint(vec![
        Answer::Status(
            429,
            "Retry-After: 0\r\n",
            r#"{"error": {"message": "slow down"}}"#.into(),
        ),
        Answer::Status(503, "", "overloaded".into()),
        Answer::Hangup,
    ]);
    let p = provider(&ep.url, |c| c.dimensions = Some(3));
    let vectors = p.embed(&["x"]).unwrap();
    assert_eq!(vectors, vec![vec![0.0, 1.0, 1.0]]);
    let seen = ep.seen.lock().unwrap();
    assert_eq!(seen.len(), 4, "three failures, then the answer");
    assert_eq!(seen[0].body["dimensions"], 3);
}

#[test]
fn an_endpoint_that_keeps_failing_gives_up_after_the_attempts_and_says_why() {
    let ep = endpoint(
        (0..10)
            .map(|_| Answer::Status(500, "", "boom".into()))
            .collect(),
    );
    let p = provider(&ep.url, |_| {});
    let err = p.embed(&["x"]).unwrap_err();
    let VectorError::Embedding(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains("HTTP 500: boom") && msg.contains("after 4 attempts"),
        "{msg}"
    );
    assert!(msg.contains(&ep.url), "{msg}");
    assert_eq!(ep.seen.lock().unwrap().len(), 4);
}

#[test]
fn client_errors_are_not_retried_and_carry_the_endpoint_message() {
    let ep = endpoint(vec![Answer::Status(
        401,
        "",
        r#"{"error": {"message": "Incorrect API key provided"}}"#.into(),
    )]);
    let p = provider(&ep.url, |_| {});
    let err = p.embed(&["x"]).unwrap_err().to_string();
    assert!(
        err.contains("HTTP 401: Incorrect API key provided"),
        "{err}"
    );
    assert_eq!(ep.seen.lock().unwrap().len(), 1);
}

#[test]
fn an_unreachable_endpoint_fails_within_the_retry_budget() {
    // A port nothing listens on: connections are refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = provider(&format!("http://127.0.0.1:{port}/v1"), |_| {});
    let started = Instant::now();
    let err = p.embed(&["x"]).unwrap_err().to_string();
    assert!(err.contains("gave up after 4 attempts"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn answers_of_the_wrong_shape_are_refused() {
    let ep = endpoint(vec![
        Answer::Status(200, "", r#"{"data": []}"#.into()),
        Answer::Status(200, "", "not json".into()),
        Answer::Echo,
        Answer::Status(
            200,
            "",
            r#"{"data": [{"index": 0, "embedding": [1.0, 2.0]}]}"#.into(),
        ),
    ]);
    let p = provider(&ep.url, |_| {});
    let err = p.embed(&["x"]).unwrap_err().to_string();
    assert!(err.contains("0 embeddings for 1 inputs"), "{err}");
    let err = p.embed(&["x"]).unwrap_err().to_string();
    assert!(err.contains("not JSON"), "{err}");
    p.embed(&["x"]).unwrap();
    // The model changed its vector length under a running index: refused, not mixed in.
    let err = p.embed(&["x"]).unwrap_err().to_string();
    assert!(
        err.contains("answered 2-dimension vectors, expected 3"),
        "{err}"
    );
}
