//! US-1 benchmark: End User Find and List over 45,000 end users with
//! realistic names. Each kind of search (begins with and contains, on the
//! user ID, the first name and the last name) runs many times through the
//! store function the page uses, first pages and deeper ones, with common
//! and rare texts. Target: p99 under 20 ms per kind.
//!   cargo bench --bench user_search

#[path = "support/database.rs"]
mod database;
#[path = "../tests/it/support/seed.rs"]
mod seed;

use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_gateway::clock::ManualClock;
use presence_gateway::config::Settings;
use presence_gateway::domain::user::{Paging, Search, SearchField, SearchMatch, UserId};
use presence_gateway::store;
use secrecy::SecretString;
use seed::NamedEndUser;

const USERS: usize = 45_000;
const RUNS_PER_KIND: usize = 400;
const TARGET: Duration = Duration::from_millis(20);

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Christopher",
    "Nancy",
    "Daniel",
    "Lisa",
    "Matthew",
    "Betty",
    "Anthony",
    "Margaret",
    "Mark",
    "Sandra",
    "Donald",
    "Ashley",
    "Steven",
    "Kimberly",
    "Paul",
    "Emily",
    "Andrew",
    "Donna",
    "Joshua",
    "Michelle",
    "Kenneth",
    "Carol",
    "Kevin",
    "Amanda",
    "Brian",
    "Melissa",
    "George",
    "Deborah",
    "Timothy",
    "Stephanie",
    "Ronald",
    "Rebecca",
    "Jason",
    "Sharon",
    "Edward",
    "Laura",
    "Jeffrey",
    "Cynthia",
    "Ryan",
    "Dorothy",
    "Jacob",
    "Amy",
    "Gary",
    "Kathleen",
    "Nicholas",
    "Angela",
    "Eric",
    "Shirley",
    "Jonathan",
    "Emma",
    "Stephen",
    "Brenda",
    "Larry",
    "Pamela",
    "Justin",
    "Nicole",
    "Scott",
    "Anna",
    "Brandon",
    "Samantha",
    "Benjamin",
    "Katherine",
    "Samuel",
    "Christine",
    "Gregory",
    "Debra",
    "Alexander",
    "Rachel",
    "Patrick",
    "Carolyn",
    "Frank",
    "Janet",
    "Raymond",
    "Maria",
    "Jack",
    "Olivia",
    "Dennis",
    "Heather",
    "Jerry",
    "Helen",
    "Zoë",
    "Søren",
    "Émile",
    "José",
    "Björn",
    "Chloé",
    "Łukasz",
    "Ana",
    "Li",
    "Wei",
];

const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Gomez",
    "Phillips",
    "Evans",
    "Turner",
    "Diaz",
    "Parker",
    "Cruz",
    "Edwards",
    "Collins",
    "Reyes",
    "Stewart",
    "Morris",
    "Morales",
    "Murphy",
    "Cook",
    "Rogers",
    "Gutierrez",
    "Ortiz",
    "Morgan",
    "Cooper",
    "Peterson",
    "Bailey",
    "Reed",
    "Kelly",
    "Howard",
    "Ramos",
    "Kim",
    "Cox",
    "Ward",
    "Richardson",
    "Watson",
    "Brooks",
    "Chavez",
    "Wood",
    "James",
    "Bennett",
    "Gray",
    "Mendoza",
    "Ruiz",
    "Hughes",
    "Price",
    "Alvarez",
    "Castillo",
    "Sanders",
    "Patel",
    "Myers",
    "Long",
    "Ross",
    "Foster",
    "Jimenez",
    "Müller",
    "O'Brien",
    "Schmidt",
    "Kowalski",
    "Ødegaard",
    "Dubois",
    "Rossi",
    "Tanaka",
    "Wang",
    "Novak",
];

/// The texts each kind searches for: common ones (thousands of matches,
/// deep pages) and rare ones.
fn kinds() -> Vec<(
    &'static str,
    SearchField,
    SearchMatch,
    &'static [&'static str],
)> {
    use SearchField::*;
    use SearchMatch::*;
    vec![
        (
            "begins with, User ID",
            UserId,
            BeginsWith,
            &["j", "ma", "kwil", "tsmith1"],
        ),
        (
            "begins with, First Name",
            FirstName,
            BeginsWith,
            &["J", "Mar", "Eli", "zo"],
        ),
        (
            "begins with, Last Name",
            LastName,
            BeginsWith,
            &["S", "Joh", "Mart", "Øde"],
        ),
        (
            "contains, User ID",
            UserId,
            Contains,
            &["son", "123", "smi", "rez"],
        ),
        (
            "contains, First Name",
            FirstName,
            Contains,
            &["ann", "ric", "eli", "hri"],
        ),
        (
            "contains, Last Name",
            LastName,
            Contains,
            &["son", "ill", "nez", "ller"],
        ),
    ]
}

/// A small deterministic generator, so every run searches the same data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % below as u64) as usize
    }
}

fn people() -> Result<Vec<NamedEndUser>, Box<dyn std::error::Error>> {
    let mut rng = Lcg(45_000);
    let mut users = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let first = FIRST[rng.next(FIRST.len())];
        let last = LAST[rng.next(LAST.len())];
        let initial: String = first
            .chars()
            .filter(char::is_ascii_alphabetic)
            .take(1)
            .collect();
        let surname: String = last.chars().filter(char::is_ascii_alphabetic).collect();
        let user_id = format!("{initial}{surname}{i}").to_lowercase();
        users.push(NamedEndUser {
            user_id: UserId::parse(&user_id)?,
            first_name: first.to_owned(),
            last_name: last.to_owned(),
        });
    }
    Ok(users)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = database::private_tempdir()?;
    let settings = Settings {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse()?,
        node_name: "bench".to_owned(),
        tls_cert: None,
        tls_key: None,
        admin_password: Some(SecretString::from("bench-console-password".to_owned())),
        proxy_env: Default::default(),
        database: database::location(dir.path()).await?,
    };
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let state = presence_gateway::cmd::serve::prepare(settings, clock)
        .await?
        .state;
    let loading = Instant::now();
    let users = people()?;
    let created = seed::create_many_named_end_users(
        &state.pool,
        &users,
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        state.now(),
    )
    .await?;
    println!(
        "End User search on {}: {created} end users with names loaded in {:.1} s",
        database::kind(),
        loading.elapsed().as_secs_f64()
    );

    let mut all_pass = true;
    let mut run = |label: &str, times: &mut Vec<Duration>, matches: &[i64]| {
        times.sort();
        let p50 = percentile(times, 0.50);
        let p99 = percentile(times, 0.99);
        let pass = p99 < TARGET;
        all_pass &= pass;
        println!(
            "{label:<26} p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  ({} runs; matches {:?})  {}",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0,
            times.len(),
            matches,
            if pass { "PASS" } else { "FAIL" }
        );
    };

    for (label, field, how, texts) in kinds() {
        let mut times = Vec::with_capacity(RUNS_PER_KIND);
        let mut matches = vec![0; texts.len()];
        for i in 0..RUNS_PER_KIND {
            let which = i % texts.len();
            let search = Search::parse(field, how, texts[which])?;
            // The first page, and every other time a page further in.
            let page = if (i / texts.len()) % 2 == 0 { 1 } else { 3 };
            let offset = Paging { page }.offset();
            let started = Instant::now();
            let result =
                store::users::search_end_users(&state.pool, &search, offset, Paging::PAGE_SIZE)
                    .await?;
            times.push(started.elapsed());
            matches[which] = result.total;
        }
        if matches.contains(&0) {
            return Err(format!("{label}: a search text matched nobody: {matches:?}").into());
        }
        run(label, &mut times, &matches);
    }

    // The unfiltered list, for information: first pages and the last one.
    let mut times = Vec::with_capacity(RUNS_PER_KIND);
    let mut total = 0;
    let last = Paging::last_page(USERS as i64);
    for i in 0..RUNS_PER_KIND {
        let page = if i % 2 == 0 { 1 } else { last };
        let started = Instant::now();
        let result = store::users::search_end_users(
            &state.pool,
            &Search::All,
            Paging { page }.offset(),
            Paging::PAGE_SIZE,
        )
        .await?;
        times.push(started.elapsed());
        total = result.total;
    }
    run("all end users (no search)", &mut times, &[total]);

    println!(
        "US-1 Find and List at {USERS} users, p99 under {} ms for every kind: {}",
        TARGET.as_millis(),
        if all_pass { "PASS" } else { "FAIL" }
    );
    state.pool.close().await;
    Ok(())
}
