//! I8 and I14: when the server cannot make its record durable (here: another process holds
//! the SQLite write lock past the busy timeout), the change is refused, and every live view
//! gets a `storage_failure` alarm that is re-sent until acknowledged, like a device alarm.

mod common;

use std::time::Duration;

use common::*;
use doorward_control::Input;
use doorward_server::ServerError;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i8_storage_failure_alarm_is_resent_until_acknowledged() {
    let ts = TestServer::start(Broker::Embedded).await;
    let home = provision(&ts.handle).await;
    let mut sse = Sse::open(ts.http, &home.id, &home.token).await;
    assert_eq!(sse.status, 200);

    // Another process takes the database's write lock and keeps it.
    let db = ts.dir.path().join("data").join("doorward.db");
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let refused = ts.handle.opt_in(home.id.clone(), id("late-carrier")).await;
    assert!(
        matches!(refused, Err(ServerError::Storage)),
        "a change that is not durable is not acknowledged: {refused:?}"
    );
    // Two busy timeouts (5 s each: the refused change, then the alarm's own record) come
    // before the alarm; 30 s leaves room on a loaded machine.
    let first = sse
        .alarm("storage_failure", Duration::from_secs(30))
        .await
        .unwrap_or_else(|seen| panic!("no storage_failure alarm; saw {seen:?}"));
    assert_eq!(first["sent"], 1);
    assert!(
        first["id"].as_u64().unwrap() > 0,
        "a real alarm id: {first}"
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);

    // Not acknowledged: re-sent with the same id (every alarm_resend_ms, 10 s by default).
    let again = sse
        .alarm("storage_failure", Duration::from_secs(15))
        .await
        .unwrap_or_else(|seen| panic!("the storage alarm was not re-sent; saw {seen:?}"));
    assert_eq!(again["id"], first["id"]);
    assert!(again["sent"].as_u64().unwrap() >= 2, "{again}");

    // Acknowledged (storage works again, so the acknowledgement is on record): no more.
    ts.handle
        .input(Input::AckAlarm {
            id: first["id"].as_u64().unwrap(),
        })
        .await
        .unwrap();
    assert!(
        sse.alarm("storage_failure", Duration::from_secs(12))
            .await
            .is_err(),
        "re-sent after it was acknowledged"
    );
    ts.stop().await;
}
