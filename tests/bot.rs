//! The example bot (`examples/bot.rs`) in a real room on 127.0.0.1.

mod common;

// The example's own code, so the test runs exactly what `cargo run
// --example bot` runs (its `main` is unused here).
#[path = "../examples/bot.rs"]
#[allow(dead_code)]
mod bot;

use chrono::{Local, TimeZone};
use common::*;

#[test]
fn replies() {
    let now = Local.with_ymd_and_hms(2026, 11, 21, 9, 5, 7).unwrap();
    let time = bot::reply("!time", now).unwrap();
    assert!(
        time.starts_with("it is 09:05:07 here (Saturday 21 November 2026, UTC"),
        "{time}"
    );
    assert_eq!(bot::reply(" !TIME ", now), Some(time));
    assert!(bot::reply("!help", now).unwrap().contains("!time"));
    assert!(bot::reply("!weather", now).unwrap().contains("!help"));
    assert_eq!(bot::reply("what's the !time", now), None);
    assert_eq!(bot::reply("hello", now), None);
}

/// The next message from `name`, skipping everything else.
async fn next_from(client: &mut cmd_chat::client::Client, name: &str) -> String {
    loop {
        let (from, text, _) = next_message(client).await;
        if from == name {
            return text;
        }
    }
}

#[tokio::test]
async fn the_bot_answers_in_the_room() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    // Said before the bot came: history, which it must not answer.
    ann.send("!help").await.unwrap();
    next_message(&mut ann).await;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let bot = tokio::spawn(bot::serve(server.join("timebot").await, async {
        let _ = stopped.await;
    }));
    until(&mut ann, |e| {
        matches!(e, cmd_chat::client::Event::Joined { .. })
    })
    .await;

    ann.send("just chatting").await.unwrap();
    ann.send("!time").await.unwrap();
    let answer = next_from(&mut ann, "timebot").await;
    assert!(
        answer.starts_with("it is "),
        "the first answer is to !time: {answer}"
    );

    ann.send("!help").await.unwrap();
    assert!(next_from(&mut ann, "timebot").await.contains("!time"));

    let _ = stop.send(());
    tokio::time::timeout(PATIENCE, bot)
        .await
        .expect("the bot stops")
        .unwrap()
        .expect("and leaves cleanly");
    assert_eq!(
        until(&mut ann, |e| matches!(
            e,
            cmd_chat::client::Event::Left { .. }
        ))
        .await,
        cmd_chat::client::Event::Left {
            user: "timebot".into()
        }
    );
}
