//! Pairing over a real broker with the real server: a wrong setup code and a QR code of
//! another key are refused and leave the device unpaired; the right code pairs it; a lock
//! cannot be paired before its camera.

mod common;

use std::time::Duration;

use common::*;
use doorward_agent::hardware::VirtualCamera;
use doorward_agent::CameraAgentConfig;
use doorward_proto::pairing::{DeviceKind, QrPayload, SetupCode};
use doorward_proto::KeyPair;
use doorward_server::{PairOptions, ServerError};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_and_keys_are_refused_and_the_right_code_pairs() {
    let ceiling = Duration::from_secs(10);
    let ts = TestServer::start(None).await;
    let home = add_home(&ts.handle).await;
    let cam_data = ts.path("camera");
    let (stop_tx, stop) = watch::channel(false);
    let (st_tx, _st) = watch::channel(None);
    let task = tokio::spawn(doorward_agent::camera_agent::run(
        CameraAgentConfig {
            data: cam_data.clone(),
            mqtt: ts.mqtt.clone(),
            id: Some(home.camera.clone()),
            lock_local: None,
            server_url: None,
        },
        Box::new(VirtualCamera::new(None)),
        stop,
        st_tx,
        say("camera"),
    ));
    let code =
        SetupCode::parse(&read_when_there(&cam_data.join("setup-code"), ceiling).await).unwrap();
    let opts = PairOptions {
        timeout_ms: 10_000,
        ..PairOptions::default()
    };
    let pair = |code: SetupCode, opts: PairOptions| {
        ts.handle.pair_device(
            home.id.clone(),
            home.camera.clone(),
            DeviceKind::Camera,
            code,
            opts,
        )
    };

    // A lock cannot be paired before its camera.
    let e = ts
        .handle
        .pair_device(
            home.id.clone(),
            home.lock.clone(),
            DeviceKind::Lock,
            code.clone(),
            PairOptions {
                camera: Some(home.camera.clone()),
                ..opts.clone()
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("pair it first"), "{e}");

    // Another code: the key confirmation fails on both sides.
    let mut wrong = SetupCode::generate(&mut rand_core::OsRng);
    while wrong == code {
        wrong = SetupCode::generate(&mut rand_core::OsRng);
    }
    let e = pair(wrong, opts.clone()).await.unwrap_err();
    assert!(
        matches!(&e, ServerError::Invalid(m) if m.contains("wrong setup code")),
        "{e}"
    );
    // The right code, but the owner scanned a QR code showing another key.
    let other = QrPayload {
        kind: DeviceKind::Camera,
        device: home.camera.clone(),
        key: KeyPair::generate(&mut rand_core::OsRng).public(),
    };
    let e = pair(
        code.clone(),
        PairOptions {
            qr: Some(other),
            ..opts.clone()
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("QR code"), "{e}");
    assert!(
        !cam_data.join("pairing.json").exists(),
        "nothing was confirmed to the device"
    );

    // The right code and its own QR code: the home learns the device key.
    let key = doorward_agent::files::DataDir::open(&cam_data)
        .unwrap()
        .key()
        .unwrap()
        .public();
    let own = QrPayload {
        kind: DeviceKind::Camera,
        device: home.camera.clone(),
        key,
    };
    let paired = pair(
        code,
        PairOptions {
            qr: Some(own),
            ..opts
        },
    )
    .await
    .expect("the right code pairs");
    assert_eq!(paired.key, key);
    assert!(paired.door.is_none(), "the camera now waits for its lock");

    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
    ts.stop().await;
}
