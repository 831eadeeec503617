//! Several nodes over one PostgreSQL store, when things happen elsewhere: events and
//! revocations from another node, a PostgreSQL restart, checkpoint images.

use crate::api::next_head;
use crate::common::{Local, TestServer, assert_error, setup_in};
use std::time::{Duration, Instant};
use sync_server::catalog::{self, TokenSelector};
use sync_testkit::pg::PgCluster;

async fn node(url: &str) -> TestServer {
    let url = url.to_string();
    TestServer::start_with(move |c| {
        c.store = Some(url);
        c.demo = false;
    })
    .await
}

async fn events(n: &TestServer, token: &str) -> reqwest::Response {
    let r = n
        .http
        .get(n.url("d", "/events"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_on_one_node_wakes_event_streams_on_another() {
    let url = PgCluster::shared().create_database();
    let (a, b) = (node(&url).await, node(&url).await);
    let token = setup_in(a.data(), "u", "d", "dev");
    let mut stream = events(&b, &token).await;
    let mut buf = String::new();
    next_head(&mut stream, &mut buf, 0).await;
    let body = Local::new().change("INSERT INTO notes VALUES (1, 't', '', 1)");
    a.push_ok(&token, "d", "b1", 0, &body).await;
    next_head(&mut stream, &mut buf, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_through_one_node_is_refused_by_the_others() {
    let url = PgCluster::shared().create_database();
    let (a, b) = (node(&url).await, node(&url).await);
    let token = setup_in(a.data(), "u", "d", "dev");
    assert_eq!(b.pull(&token, "d", 0).await.head_seq, 0);
    a.catalog(|c| catalog::revoke_tokens(c, &TokenSelector::Device("dev".into())));
    let started = Instant::now();
    loop {
        let r = b
            .http
            .get(b.url("d", ""))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if r.status() == 401 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "node b still accepts a revoked token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "revocation seen by the other node after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_restarts_pushes_are_refused_then_applied_once() {
    // A cluster of its own: the shared one serves tests running meanwhile.
    let pg = PgCluster::start().unwrap();
    let url = pg.create_database();
    let (a, b) = (node(&url).await, node(&url).await);
    let token = setup_in(a.data(), "u", "d", "dev");
    let local = Local::new();
    let first = local.change("INSERT INTO notes VALUES (1, 'one', '', 1)");
    a.push_ok(&token, "d", "b1", 0, &first).await;
    let mut stream = events(&b, &token).await;
    let mut buf = String::new();
    next_head(&mut stream, &mut buf, 1).await;

    pg.stop();
    let second = local.change("INSERT INTO notes VALUES (2, 'two', '', 1)");
    let started = Instant::now();
    let (status, json) = a.push(&token, "d", "b2", 1, &second).await;
    assert_error(status, &json, 503, "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the refusal is bounded: {:?}",
        started.elapsed()
    );
    pg.start_again();
    // The retried batch (on the other node) is applied once; the stream on b hears of it.
    let r = b.push_ok(&token, "d", "b2", 1, &second).await;
    assert_eq!(r.seq, 2);
    let again = a.push_ok(&token, "d", "b2", 1, &second).await;
    assert!(again.duplicate);
    let third = local.change("INSERT INTO notes VALUES (3, 'three', '', 1)");
    a.push_ok(&token, "d", "b3", 2, &third).await;
    next_head(&mut stream, &mut buf, 3).await;
    let db = url.rsplit('/').next().unwrap();
    assert_eq!(pg.psql(db, "SELECT count(*) FROM sync_entries").trim(), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_starts_from_the_checkpoint_image() {
    let url = PgCluster::shared().create_database();
    let a = node(&url).await;
    let token = setup_in(a.data(), "u", "d", "dev");
    let local = Local::new();
    let n = sync_server::store::CHECKPOINT_EVERY + 10;
    for i in 1..=n {
        let body = local.change(&format!("INSERT INTO notes VALUES ({i}, 't', '', 1)"));
        a.push_ok(&token, "d", &format!("b{i}"), i - 1, &body).await;
    }
    let db = url.rsplit('/').next().unwrap();
    let pg = PgCluster::shared();
    let images = pg.psql(
        db,
        "SELECT min(version), max(version) FROM sync_images WHERE file > 0",
    );
    let frames = pg.psql(db, "SELECT min(version) FROM sync_frames WHERE file > 0");
    let (lo, hi) = images.trim().split_once('|').unwrap();
    assert_eq!(lo, hi, "older images are pruned: {images}");
    let image: i64 = hi.parse().unwrap();
    assert!(image >= sync_server::store::CHECKPOINT_EVERY, "{images}");
    assert_eq!(
        frames.trim().parse::<i64>().unwrap(),
        image,
        "frames before it pruned"
    );
    let fresh = node(&url).await;
    let page = fresh.pull(&token, "d", n - 5).await;
    assert_eq!(page.head_seq, n);
    assert_eq!(page.entries.len(), 5);
}

#[test]
fn the_store_schema_migrates_once_and_a_newer_store_is_refused() {
    use sync_server::store::{MIGRATIONS, PgStore};
    let pg = PgCluster::shared();
    let url = pg.create_database();
    // Three nodes starting at once: the advisory lock lets one migrate, the others wait.
    let starts: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::connect(&url, 1).map(|s| s.schema_version()))
        })
        .collect();
    for s in starts {
        assert_eq!(s.join().unwrap().unwrap().unwrap(), MIGRATIONS.len() as i32);
    }
    let db = url.rsplit('/').next().unwrap();
    let applied = pg.psql(db, "SELECT count(*), max(version) FROM sync_store_version");
    assert_eq!(applied.trim(), format!("{0}|{0}", MIGRATIONS.len()));
    pg.psql(db, "INSERT INTO sync_store_version(version) VALUES (999)");
    let err = PgStore::connect(&url, 1).unwrap_err().to_string();
    assert!(err.contains("999"), "{err}");
    let mut config = sync_testkit::config(tempfile::tempdir().unwrap().path());
    config.store = Some(url);
    let refused = sync_server::AppState::new(config).unwrap_err().to_string();
    assert!(
        refused.contains("999"),
        "a server does not start on it: {refused}"
    );
}
