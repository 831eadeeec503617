//! JWTs of the operator's identity provider, minted here: HS256 with a shared secret, RS256
//! and ES256 with the JWKS file under `tests/testdata/jwt`. Each refusal has its code and
//! changes nothing; the server's own tokens keep working beside them.

use crate::common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sync_server::config::JwtConfig;

const SECRET: &[u8] = b"an HS256 secret of at least thirty-two bytes";
const AUD: &str = "session-sync";
const ISS: &str = "https://id.example.test/";

fn testdata(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/jwt")
        .join(name)
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// Claims for `sub` on device `device`, valid for `ttl` seconds from now, with `dbs`.
fn claims(sub: &str, device: &str, ttl: i64, dbs: serde_json::Value) -> serde_json::Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": sub, "device": device,
        "iat": now(), "exp": now() + ttl,
        "sync": {"databases": dbs},
    })
}

fn hs256(claims: &serde_json::Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn signed(alg: Algorithm, kid: &str, pem: &str, claims: &serde_json::Value) -> String {
    let pem = std::fs::read(testdata(pem)).unwrap();
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        _ => EncodingKey::from_ec_pem(&pem).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

async fn jwt_server() -> TestServer {
    TestServer::start_with(|c| {
        let mut jwt = JwtConfig::hs256(SECRET, AUD, ISS);
        jwt.jwks_file = Some(testdata("jwks.json"));
        jwt.leeway = std::time::Duration::from_secs(2);
        c.jwt = Some(jwt);
    })
    .await
}

fn note(n: i64) -> Vec<u8> {
    Local::new().change(&format!("INSERT INTO notes VALUES ({n}, 't{n}', '', 1)"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_tokens_map_claims_to_grants_and_bad_ones_change_nothing() {
    let s = jwt_server().await;
    // The database exists in the catalog; the JWT's user need not.
    let own = s.setup("owner", "notes");
    s.setup("owner", "shared");
    let rw = hs256(
        &claims(
            "alice",
            "phone",
            300,
            json!({"notes": "rw", "shared": "ro"}),
        ),
        SECRET,
    );
    let answer = s.push_ok(&rw, "notes", "b1", 0, &note(1)).await;
    assert_eq!(answer.seq, 1);
    let page = s.pull(&rw, "notes", 0).await;
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].origin, "jwt:alice:phone");
    // The server's own tokens work beside JWTs.
    s.push_ok(&own, "notes", "b2", 1, &note(2)).await;

    let before = dump(&s.db_path("notes"));
    let mut wrong_aud = claims("alice", "phone", 300, json!({"notes": "rw"}));
    wrong_aud["aud"] = json!("another-service");
    let mut wrong_iss = claims("alice", "phone", 300, json!({"notes": "rw"}));
    wrong_iss["iss"] = json!("https://evil.example.test/");
    let mut not_yet = claims("alice", "phone", 300, json!({"notes": "rw"}));
    not_yet["nbf"] = json!(now() + 120);
    let mut bad_access = claims("alice", "phone", 300, json!({"notes": "admin"}));
    bad_access["x"] = json!(1);
    let wildcard = claims("alice", "phone", 300, json!({"*": "rw"}));
    let mut no_device = claims("alice", "phone", 300, json!({"notes": "rw"}));
    no_device.as_object_mut().unwrap().remove("device");
    let cases = [
        (
            "expired",
            hs256(
                &claims("alice", "phone", -60, json!({"notes": "rw"})),
                SECRET,
            ),
            401,
            "token_expired",
        ),
        (
            "wrong key",
            hs256(
                &claims("alice", "phone", 300, json!({"notes": "rw"})),
                b"another secret that is also thirty-two bytes",
            ),
            401,
            "token_invalid",
        ),
        (
            "wrong audience",
            hs256(&wrong_aud, SECRET),
            401,
            "token_invalid",
        ),
        (
            "wrong issuer",
            hs256(&wrong_iss, SECRET),
            401,
            "token_invalid",
        ),
        (
            "not valid yet",
            hs256(&not_yet, SECRET),
            401,
            "token_invalid",
        ),
        (
            "bad access",
            hs256(&bad_access, SECRET),
            401,
            "token_invalid",
        ),
        ("wildcard", hs256(&wildcard, SECRET), 401, "token_invalid"),
        ("no device", hs256(&no_device, SECRET), 401, "token_invalid"),
        (
            "tampered",
            {
                let t = hs256(
                    &claims("alice", "phone", 300, json!({"notes": "ro"})),
                    SECRET,
                );
                let forged = hs256(
                    &claims("alice", "phone", 300, json!({"notes": "rw"})),
                    SECRET,
                );
                // The payload of one, the signature of another.
                let (h, rest) = forged.split_once('.').unwrap();
                let (p, _) = rest.split_once('.').unwrap();
                format!("{h}.{p}.{}", t.rsplit('.').next().unwrap())
            },
            401,
            "token_invalid",
        ),
        (
            "read-only claim",
            hs256(
                &claims("alice", "phone", 300, json!({"notes": "ro"})),
                SECRET,
            ),
            403,
            "read_only",
        ),
        (
            "no grant",
            hs256(
                &claims("alice", "phone", 300, json!({"shared": "rw"})),
                SECRET,
            ),
            404,
            "database_not_found",
        ),
    ];
    for (what, token, status, code) in cases {
        let (got, json) = s.push(&token, "notes", "b3", 2, &note(3)).await;
        assert_eq!(
            (got.as_u16(), json["code"].as_str()),
            (status, Some(code)),
            "{what}: {json}"
        );
    }
    assert_eq!(
        dump(&s.db_path("notes")),
        before,
        "a refused JWT changed nothing"
    );
    // A read-only grant reads.
    let ro = hs256(
        &claims("bob", "tablet", 300, json!({"shared": "ro"})),
        SECRET,
    );
    assert!(s.pull(&ro, "shared", 0).await.entries.is_empty());
    let shared_before = dump(&s.db_path("shared"));
    let (status, json) = s.push(&ro, "shared", "b4", 0, &note(4)).await;
    assert_error(status, &json, 403, "read_only");
    // A grant on a database that does not exist answers like no grant.
    let ghost = hs256(
        &claims("bob", "tablet", 300, json!({"ghost": "rw"})),
        SECRET,
    );
    let (status, json) = s.push(&ghost, "ghost", "b5", 0, &note(5)).await;
    assert_error(status, &json, 404, "database_not_found");
    assert_eq!(dump(&s.db_path("shared")), shared_before);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_tokens_verify_against_the_jwks_by_kid() {
    let s = jwt_server().await;
    s.setup("owner", "notes");
    let grants = json!({"notes": "rw"});
    let rs = signed(
        Algorithm::RS256,
        "rsa-1",
        "rs256-private.pem",
        &claims("carol", "laptop", 300, grants.clone()),
    );
    s.push_ok(&rs, "notes", "r1", 0, &note(1)).await;
    let es = signed(
        Algorithm::ES256,
        "ec-1",
        "es256-private.pem",
        &claims("dave", "phone", 300, grants.clone()),
    );
    s.push_ok(&es, "notes", "e1", 1, &note(2)).await;
    let origins: Vec<String> = s
        .pull(&es, "notes", 0)
        .await
        .entries
        .into_iter()
        .map(|e| e.origin)
        .collect();
    assert_eq!(origins, ["jwt:carol:laptop", "jwt:dave:phone"]);

    let before = dump(&s.db_path("notes"));
    let mut wrong_aud = claims("carol", "laptop", 300, grants.clone());
    wrong_aud["aud"] = json!("not-us");
    let cases = [
        (
            "wrong key",
            signed(
                Algorithm::RS256,
                "rsa-1",
                "other-rs256-private.pem",
                &claims("carol", "laptop", 300, grants.clone()),
            ),
            "token_invalid",
        ),
        (
            "unknown kid",
            signed(
                Algorithm::RS256,
                "rsa-9",
                "rs256-private.pem",
                &claims("carol", "laptop", 300, grants.clone()),
            ),
            "token_invalid",
        ),
        (
            "key of another algorithm",
            signed(
                Algorithm::ES256,
                "rsa-1",
                "es256-private.pem",
                &claims("carol", "laptop", 300, grants.clone()),
            ),
            "token_invalid",
        ),
        (
            "expired",
            signed(
                Algorithm::ES256,
                "ec-1",
                "es256-private.pem",
                &claims("dave", "phone", -60, grants.clone()),
            ),
            "token_expired",
        ),
        (
            "wrong audience",
            signed(Algorithm::RS256, "rsa-1", "rs256-private.pem", &wrong_aud),
            "token_invalid",
        ),
    ];
    for (what, token, code) in cases {
        let (status, json) = s.push(&token, "notes", "x1", 2, &note(3)).await;
        assert_eq!(
            (status.as_u16(), json["code"].as_str()),
            (401, Some(code)),
            "{what}: {json}"
        );
    }
    assert_eq!(dump(&s.db_path("notes")), before);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_a_device_claim_names_its_device_by_header_and_expires_from_the_cache() {
    let s = jwt_server().await;
    s.setup("owner", "notes");
    let mut c = claims("erin", "x", 1, json!({"notes": "rw"}));
    c.as_object_mut().unwrap().remove("device");
    let token = hs256(&c, SECRET);
    let push = |device: &'static str, batch: &'static str, cursor: i64, n: i64| {
        let r = s
            .http
            .post(s.url("notes", "/push"))
            .bearer_auth(&token)
            .header("sync-device", device)
            .header("content-type", "application/vnd.sqlite-changeset")
            .header("sync-batch-id", batch)
            .header("sync-cursor", cursor.to_string())
            .header("sync-schema-version", "1")
            .body(note(n));
        async move { json_of(r.send().await.unwrap()).await }
    };
    let (status, json) = push("watch", "h1", 0, 1).await;
    assert_eq!(status.as_u16(), 200, "{json}");
    let (status, json) = push("../etc", "h2", 1, 2).await;
    assert_error(status, &json, 401, "token_invalid");
    // Without the header (and no claim), the token names no device.
    let r = s
        .http
        .get(s.url("notes", "/pull?since=0"))
        .bearer_auth(&token);
    let (status, json) = json_of(r.send().await.unwrap()).await;
    assert_error(status, &json, 401, "token_invalid");
    let r = s
        .http
        .get(s.url("notes", "/pull?since=0"))
        .bearer_auth(&token)
        .header("sync-device", "watch")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page = sync_core::protocol::pull::decode(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(page.entries[0].origin, "jwt:erin:watch");
    // Remembered while valid, never past `exp` (+ the 2 s leeway; `exp` is in whole
    // seconds, valid through its second).
    tokio::time::sleep(std::time::Duration::from_millis(4_200)).await;
    let (status, json) = push("watch", "h3", 1, 3).await;
    assert_error(status, &json, 401, "token_expired");
    s.stop().await;
}
