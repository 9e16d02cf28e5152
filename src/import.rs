//! `roster import`: from the accounts the instances hold today to the user files that
//! describe them, so a team starts from its live state instead of typing hundreds of
//! entries (contract section 9).
//!
//! [`build`] is pure: it takes what each instance listed and what the folder already
//! holds, and returns the files to write and a summary. The command line does the
//! reading and the writing. The rules, in order:
//!
//! - an account some file already claims (by its id or any alias) is skipped;
//! - an account whose live status its kind cannot set (Atlan `enabled: null`, a locked
//!   ZITADEL user), whose id cannot be written in a user file, or whose id names two
//!   records at the provider is written as a YAML comment that says why;
//! - accounts are joined into one user by email (case-insensitive), else by login where
//!   both sides have one (`--join login`: by login only; `--join none`: never). A join
//!   that would put two accounts of one instance into one user, or (by email) link
//!   different emails, is not made: each account becomes its own user, with a comment;
//! - a user's name is the email's local part or the login, made unique;
//! - each user is written to the file of its first instance in `providers.yaml` order,
//!   with each account's live status as its desired status, so the next plan is empty.
//!
//! Every value from a provider is untrusted: it reaches the YAML only through
//! [`quoted`] (a double-quoted scalar with every control, invisible or line-breaking
//! character escaped) or, in comments, through [`comment`] (one line, escaped), so a
//! display name can neither forge a key nor make the file invalid.

use crate::desired::{DesiredState, User};
use crate::escape;
use crate::model::{HeldAccount, Inventory, KindSpec};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

/// How accounts at different instances are recognised as one person's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Join {
    /// By email address (case-insensitive), else by login where both sides have one.
    Email,
    /// By login (case-insensitive) only.
    Login,
    /// Never: every account becomes its own user.
    None,
}

/// One selected instance, in `providers.yaml` order, and what listing it gave.
pub struct Source {
    pub instance: String,
    pub kind: &'static KindSpec,
    pub inventory: Inventory,
}

/// What the folder already holds, which an import must not repeat: the accounts its
/// files claim and the user names they use.
#[derive(Debug, Default)]
pub struct Existing {
    /// `(instance, key)` -> the user whose file claims it.
    claimed: HashMap<(String, String), String>,
    names: HashSet<String>,
}

impl Existing {
    /// The claims and names of `desired`, leaving out the users for which `replaced`
    /// is true (those of the files the import is about to overwrite, whose accounts it
    /// writes again).
    pub fn of(desired: &DesiredState, replaced: impl Fn(&User) -> bool) -> Existing {
        let mut existing = Existing::default();
        for user in desired.users.iter().filter(|u| !replaced(u)) {
            existing.names.insert(user.name.clone());
            for account in &user.accounts {
                existing.claimed.insert(
                    (account.instance.clone(), account.id.clone()),
                    user.name.clone(),
                );
            }
        }
        existing
    }

    /// Records that the user `user` of some file claims `id` at `instance`.
    pub fn claim(&mut self, instance: &str, id: &str, user: &str) {
        self.claimed
            .insert((instance.to_string(), id.to_string()), user.to_string());
    }

    /// Records that a file uses the user name `name`.
    pub fn name(&mut self, name: &str) {
        self.names.insert(name.to_string());
    }

    /// The user that claims `key` at `instance`, if one does.
    fn claims(&self, instance: &str, key: &str) -> Option<&str> {
        self.claimed
            .get(&(instance.to_string(), key.to_string()))
            .map(String::as_str)
    }
}

/// One file to write: `<instance>.yaml` in the output folder.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportFile {
    pub instance: String,
    pub text: String,
    /// Users written (not counting those written as comments).
    pub users: usize,
    /// Accounts written (not counting those written as comments).
    pub accounts: usize,
}

impl ImportFile {
    /// The file's name in the output folder.
    pub fn file_name(&self) -> String {
        format!("{}.yaml", self.instance)
    }
}

/// An account written as a comment, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Commented {
    pub instance: String,
    pub id: String,
    pub reason: String,
}

/// What an import wrote and what it left out, for the summary on stderr.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Accounts written as entries.
    pub accounts: usize,
    /// Users written (with at least one entry).
    pub users: usize,
    /// Users whose entries span more than one instance.
    pub joined: usize,
    /// Accounts skipped because a file already claims them, by instance.
    pub claimed: BTreeMap<String, usize>,
    /// Accounts written as comments.
    pub commented: Vec<Commented>,
    /// Accounts that share an email or login with another but were not joined.
    pub not_joined: usize,
    /// Users written whose email or login is also on an account a file already holds:
    /// perhaps a person the folder knows under another name.
    pub known_elsewhere: usize,
    /// Instances that cannot list all their accounts, with the reason.
    pub cannot_list: Vec<(String, String)>,
}

impl Summary {
    /// The summary as lines for people; values from providers are left raw for the
    /// caller to escape where it prints them.
    pub fn lines(&self, files: &[(String, &ImportFile)]) -> Vec<String> {
        let mut lines = vec![format!(
            "Imported {} account(s) into {} user(s), {} of them joined across instances.",
            self.accounts, self.users, self.joined
        )];
        for (path, file) in files {
            lines.push(format!(
                "  {path}: {} user(s), {} account(s)",
                file.users, file.accounts
            ));
        }
        if !self.claimed.is_empty() {
            let total: usize = self.claimed.values().sum();
            let each: Vec<String> = self
                .claimed
                .iter()
                .map(|(instance, n)| format!("{instance}: {n}"))
                .collect();
            lines.push(format!(
                "Skipped {total} account(s) that a file already claims ({}).",
                each.join(", ")
            ));
        }
        if !self.commented.is_empty() {
            lines.push(format!(
                "Written as comments, not imported: {} account(s) Roster cannot manage as they are:",
                self.commented.len()
            ));
            for c in &self.commented {
                lines.push(format!("  {} {:?}: {}", c.instance, c.id, c.reason));
            }
        }
        if self.not_joined > 0 {
            lines.push(format!(
                "Not joined: {} account(s) share an email or login ambiguously; each is its own user, with a comment that says why.",
                self.not_joined
            ));
        }
        if self.known_elsewhere > 0 {
            lines.push(format!(
                "Maybe known already: {} user(s) share an email or login with a user of the folder; a comment above each names that user.",
                self.known_elsewhere
            ));
        }
        for (instance, reason) in &self.cannot_list {
            lines.push(format!(
                "Cannot list {instance}, nothing imported from it: {reason}"
            ));
        }
        lines
    }
}

/// The files to write and the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    /// One per instance that listed its accounts, in `sources` order.
    pub files: Vec<ImportFile>,
    pub summary: Summary,
}

/// One listed account that the import writes, as an entry or as a comment.
struct Entry<'a> {
    /// Index of its instance in the sources (`providers.yaml` order).
    source: usize,
    account: &'a HeldAccount,
    /// Why it is written as a comment rather than an entry.
    unusable: Option<String>,
    /// Why it was not joined with accounts it shares an email or login with.
    note: Option<String>,
}

impl Entry<'_> {
    fn email(&self) -> Option<String> {
        self.account.email.as_deref().map(str::to_lowercase)
    }

    fn login(&self) -> Option<String> {
        self.account.login.as_deref().map(str::to_lowercase)
    }
}

/// One user to write: the entries of one person, in `providers.yaml` order.
struct Person<'a> {
    entries: Vec<&'a Entry<'a>>,
    name: String,
    /// The source whose file holds the user.
    home: usize,
    /// A user of the folder with the same email or login, and which one matched.
    known_as: Option<(String, String)>,
}

impl Person<'_> {
    fn written(&self) -> impl Iterator<Item = &&Entry<'_>> {
        self.entries.iter().filter(|e| e.unusable.is_none())
    }
}

/// Computes the files an import writes. Pure: the same inputs give the same bytes,
/// whatever order the providers listed their accounts in.
pub fn build(sources: &[Source], existing: &Existing, join: Join) -> Import {
    let mut summary = Summary::default();
    let mut entries = Vec::new();
    // The email or login of each claimed account, with the user that claims it.
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    for (index, source) in sources.iter().enumerate() {
        let accounts = match &source.inventory {
            Inventory::Listed(accounts) => accounts,
            Inventory::CannotList { reason } => {
                summary
                    .cannot_list
                    .push((source.instance.clone(), reason.clone()));
                continue;
            }
        };
        let mut accounts: Vec<&HeldAccount> = accounts.iter().collect();
        accounts.sort_by(|a, b| order(a).cmp(&order(b)));
        let holders = holders(&accounts);
        for account in accounts {
            if let Some(user) = keys(account).find_map(|key| existing.claims(&source.instance, key))
            {
                *summary.claimed.entry(source.instance.clone()).or_default() += 1;
                for key in join_keys(account, join) {
                    known.entry(key).or_insert_with(|| user.to_string());
                }
                continue;
            }
            entries.push(Entry {
                source: index,
                account,
                unusable: unusable(source.kind, account, &holders),
                note: None,
            });
        }
    }
    let groups = group(&mut entries, join);
    let mut people = name(&entries, groups, existing);
    for person in &mut people {
        person.known_as = person.entries.iter().find_map(|e| {
            join_keys(e.account, join)
                .into_iter()
                .find_map(|key| Some((known.get(&key)?.clone(), key)))
        });
    }
    let mut files = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        if !matches!(source.inventory, Inventory::Listed(_)) {
            continue;
        }
        let mut home: Vec<&Person> = people.iter().filter(|p| p.home == index).collect();
        home.sort_by(|a, b| a.name.cmp(&b.name));
        files.push(render(source, &home, sources));
    }
    for person in &people {
        let written = person.written().count();
        if written > 0 {
            summary.users += 1;
            if person.known_as.is_some() {
                summary.known_elsewhere += 1;
            }
            summary.accounts += written;
            let mut instances: Vec<usize> = person.written().map(|e| e.source).collect();
            instances.dedup();
            if instances.len() > 1 {
                summary.joined += 1;
            }
        }
        for entry in &person.entries {
            if entry.note.is_some() {
                summary.not_joined += 1;
            }
            if let Some(reason) = &entry.unusable {
                summary.commented.push(Commented {
                    instance: sources[entry.source].instance.clone(),
                    id: entry.account.id.clone(),
                    reason: reason.clone(),
                });
            }
        }
    }
    summary
        .commented
        .sort_by(|a, b| (&a.instance, &a.id).cmp(&(&b.instance, &b.id)));
    Import { files, summary }
}

/// The keys `join` would join an account by, as compared: its email and login
/// (lower-case) for email joins, its login for login joins.
fn join_keys(account: &HeldAccount, join: Join) -> Vec<String> {
    let email = account.email.as_deref().map(str::to_lowercase);
    let login = account.login.as_deref().map(str::to_lowercase);
    match join {
        Join::Email => email.into_iter().chain(login).collect(),
        Join::Login => login.into_iter().collect(),
        Join::None => Vec::new(),
    }
}

/// A total order of one instance's accounts, so the output never depends on the order
/// the provider listed them in.
fn order(account: &HeldAccount) -> (&str, &Option<String>, &Option<String>, &str) {
    (
        &account.id,
        &account.email,
        &account.login,
        account.live.status.as_str(),
    )
}

/// Every key a user file may name the account by: its id, then its aliases.
fn keys(account: &HeldAccount) -> impl Iterator<Item = &str> {
    std::iter::once(account.id.as_str()).chain(account.aliases.iter().map(String::as_str))
}

/// How many records of one instance each key names (a record counted once per key).
fn holders<'a>(accounts: &[&'a HeldAccount]) -> HashMap<&'a str, usize> {
    let mut holders = HashMap::new();
    for account in accounts {
        let mut own: Vec<&str> = keys(account).collect();
        own.sort_unstable();
        own.dedup();
        for key in own {
            *holders.entry(key).or_insert(0) += 1;
        }
    }
    holders
}

/// Why an account cannot be written as an entry, if it cannot.
fn unusable(
    kind: &KindSpec,
    account: &HeldAccount,
    holders: &HashMap<&str, usize>,
) -> Option<String> {
    let id = account.id.as_str();
    if id.trim().is_empty() || id == "~" || id == "." || id == ".." || id.contains(char::is_control)
    {
        return Some(
            "its id cannot be written in a user file (empty, a path step, or control characters)"
                .to_string(),
        );
    }
    if holders.get(id).copied().unwrap_or(0) > 1 {
        return Some(format!(
            "its id {id:?} names more than one account at the provider, so Roster cannot tell which one a file means"
        ));
    }
    let status = account.live.status.as_str();
    if !kind.statuses.contains(&status) {
        let why = match &account.live.refusal {
            Some(refusal) => refusal.reason.clone(),
            None => format!("a {} instance cannot be set to it", kind.name),
        };
        return Some(format!("live status '{status}': {why}"));
    }
    None
}

/// A union-find over entry indexes.
struct Sets(Vec<usize>);

impl Sets {
    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        // The smaller index is the root, so the grouping never depends on call order.
        if a < b {
            self.0[b] = a;
        } else {
            self.0[a] = b;
        }
    }
}

/// Groups the entries into people by `join`; a group that would hold two accounts of
/// one instance, or (by email) two different emails, is split back into single
/// accounts, each noted. Returns groups of entry indexes, each in entry order.
fn group(entries: &mut [Entry], join: Join) -> Vec<Vec<usize>> {
    let mut sets = Sets((0..entries.len()).collect());
    let mut by = |key: fn(&Entry) -> Option<String>, only_if: fn(&Entry) -> bool| {
        let mut seen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, entry) in entries.iter().enumerate() {
            if let Some(key) = key(entry) {
                seen.entry(key).or_default().push(i);
            }
        }
        for members in seen.values() {
            // Join through an entry that qualifies: with email joins, a login links
            // only where one side has no email.
            if let Some(&anchor) = members.iter().find(|&&i| only_if(&entries[i])) {
                for &i in members {
                    sets.union(anchor, i);
                }
            }
        }
    };
    match join {
        Join::Email => {
            by(|e: &Entry| e.email(), |_| true);
            by(|e: &Entry| e.login(), |e| e.email().is_none());
        }
        Join::Login => by(|e: &Entry| e.login(), |_| true),
        Join::None => {}
    }
    let mut components: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..entries.len() {
        components.entry(sets.find(i)).or_default().push(i);
    }
    let mut groups = Vec::new();
    for members in components.into_values() {
        match conflict(entries, &members, join) {
            None => groups.push(members),
            Some(note) => {
                for &i in &members {
                    entries[i].note = Some(note.clone());
                    groups.push(vec![i]);
                }
            }
        }
    }
    groups
}

/// Why the accounts `members` cannot be one person, if they cannot.
fn conflict(entries: &[Entry], members: &[usize], join: Join) -> Option<String> {
    if members.len() < 2 {
        return None;
    }
    let all_same = |key: fn(&Entry) -> Option<String>| {
        let first = key(&entries[members[0]])?;
        members
            .iter()
            .all(|&i| key(&entries[i]).as_ref() == Some(&first))
            .then_some(first)
    };
    let link = if let Some(email) = all_same(|e: &Entry| e.email()) {
        format!("the email {email:?}")
    } else if let Some(login) = all_same(|e: &Entry| e.login()) {
        format!("the login {login:?}")
    } else {
        "their emails and logins".to_string()
    };
    let mut per_source: BTreeMap<usize, usize> = BTreeMap::new();
    for &i in members {
        *per_source.entry(entries[i].source).or_default() += 1;
    }
    if let Some((&source, _)) = per_source.iter().find(|(_, &n)| n > 1) {
        let ids: Vec<String> = members
            .iter()
            .filter(|&&i| entries[i].source == source)
            .map(|&i| format!("{:?}", entries[i].account.id))
            .collect();
        return Some(format!(
            "not joined: {link} links {} accounts at one instance ({}), so Roster cannot tell whose is whose",
            ids.len(),
            ids.join(", ")
        ));
    }
    if join == Join::Email {
        let mut emails: Vec<String> = members.iter().filter_map(|&i| entries[i].email()).collect();
        emails.sort();
        emails.dedup();
        if emails.len() > 1 {
            return Some(format!(
                "not joined: {link} link accounts with different emails ({})",
                emails
                    .iter()
                    .map(|e| format!("{e:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    None
}

/// Turns groups into people with unique names, given in a stable order: by the name
/// each would like, then its home instance, then its first account id.
fn name<'a>(
    entries: &'a [Entry<'a>],
    groups: Vec<Vec<usize>>,
    existing: &Existing,
) -> Vec<Person<'a>> {
    let mut wanted: Vec<(String, Person<'a>)> = groups
        .into_iter()
        .map(|members| {
            let mut people: Vec<&Entry> = members.iter().map(|&i| &entries[i]).collect();
            people.sort_by(|a, b| (a.source, order(a.account)).cmp(&(b.source, order(b.account))));
            let home = people
                .iter()
                .find(|e| e.unusable.is_none())
                .or(people.first())
                .map_or(0, |e| e.source);
            let base = base_name(&people);
            (
                base,
                Person {
                    entries: people,
                    name: String::new(),
                    home,
                    known_as: None,
                },
            )
        })
        .collect();
    wanted.sort_by(|(a, pa), (b, pb)| {
        let first = |p: &Person| p.entries.first().map(|e| order(e.account).0.to_string());
        (a, pa.home, first(pa)).cmp(&(b, pb.home, first(pb)))
    });
    let mut taken: HashSet<String> = existing.names.clone();
    wanted
        .into_iter()
        .map(|(base, mut person)| {
            person.name = unique(&base, &mut taken);
            person
        })
        .collect()
}

/// The name a person would like: the local part of an email, else a login, else the
/// instance and id of the first account; made valid by [`user_name`].
fn base_name(entries: &[&Entry]) -> String {
    let from_email = entries
        .iter()
        .find_map(|e| e.account.email.as_deref())
        .map(|email| email.rsplit_once('@').map_or(email, |(local, _)| local));
    let from_login = || {
        entries
            .iter()
            .find_map(|e| e.account.login.as_deref())
            .map(|login| login.rsplit_once('@').map_or(login, |(local, _)| local))
    };
    let base = match from_email.or_else(from_login) {
        Some(text) => user_name(text),
        None => String::new(),
    };
    if !base.is_empty() {
        return base;
    }
    let fallback = entries
        .first()
        .map(|e| user_name(&format!("user-{}", e.account.id)))
        .unwrap_or_default();
    if fallback.is_empty() {
        "user".to_string()
    } else {
        fallback
    }
}

/// The most characters of a generated user name.
const MAX_NAME: usize = 64;

/// A user name made from provider text: lower-case letters and digits (any script),
/// `.`, `_` and `-`; every other character (spaces, punctuation, controls, invisible
/// characters) becomes `-`, runs collapse, and the ends are trimmed. May be empty.
pub fn user_name(text: &str) -> String {
    let mut name = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        let c = if c.is_alphanumeric() || matches!(c, '.' | '_') {
            c
        } else {
            '-'
        };
        if c == '-' && (name.is_empty() || name.ends_with('-')) {
            continue;
        }
        if name.chars().count() >= MAX_NAME {
            break;
        }
        name.push(c);
    }
    name.trim_matches(|c| matches!(c, '-' | '.' | '_'))
        .to_string()
}

/// `base`, or `base-2`, `base-3`... whichever is not taken yet; marks it taken.
fn unique(base: &str, taken: &mut HashSet<String>) -> String {
    let mut name = base.to_string();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    taken.insert(name.clone());
    name
}

/// The user file of `source`: a header, then its users sorted by name, then the users
/// that could only be written as comments.
fn render(source: &Source, people: &[&Person], sources: &[Source]) -> ImportFile {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Imported by `roster import` from the instance '{}' (kind {}).",
        comment(&source.instance),
        source.kind.name
    );
    text.push_str(
        "# Each account's status is its live status at the time of the import, so\n\
         # `roster plan` shows no change for it. A person with accounts at several\n\
         # instances is written once, in the file of the first of those instances in\n\
         # providers.yaml. Review the names and the joins, then commit.\n",
    );
    let (written, commented): (Vec<&Person>, Vec<&Person>) =
        people.iter().partition(|p| p.written().next().is_some());
    let mut users = 0;
    let mut accounts = 0;
    if written.is_empty() {
        text.push_str("users: []\n");
    } else {
        text.push_str("users:\n");
    }
    for person in written {
        users += 1;
        accounts += person.written().count();
        write_person(&mut text, person, sources);
    }
    if !commented.is_empty() {
        text.push_str(
            "  # Not imported: Roster cannot manage these accounts as they are (each says\n\
             \x20 # why). Once decided, give each a status Roster can set and uncomment it.\n",
        );
        for person in commented {
            write_commented_person(&mut text, person, sources);
        }
    }
    ImportFile {
        instance: source.instance.clone(),
        text,
        users,
        accounts,
    }
}

/// The email or login a user was named and joined by, shown beside its name.
fn label(person: &Person) -> Option<String> {
    person
        .entries
        .iter()
        .find_map(|e| e.account.email.clone())
        .or_else(|| {
            person
                .entries
                .iter()
                .find_map(|e| e.account.login.as_ref().map(|l| format!("login {l}")))
        })
}

fn write_notes(text: &mut String, person: &Person) {
    let mut notes: Vec<&str> = person
        .entries
        .iter()
        .filter_map(|e| e.note.as_deref())
        .collect();
    notes.dedup();
    for note in notes {
        let _ = writeln!(text, "  # {}", comment(note));
    }
    if let Some((user, key)) = &person.known_as {
        let _ = writeln!(
            text,
            "  # '{}' is also on an account of the user '{}' that a file already holds: if this is the same person, move these accounts to that user",
            comment(key),
            comment(user)
        );
    }
}

fn name_line(person: &Person) -> String {
    match label(person) {
        Some(label) => format!("- name: {}   # {}", scalar(&person.name), comment(&label)),
        None => format!("- name: {}", scalar(&person.name)),
    }
}

fn write_person(text: &mut String, person: &Person, sources: &[Source]) {
    write_notes(text, person);
    let _ = writeln!(text, "  {}", name_line(person));
    let status = common_status(person);
    let _ = writeln!(text, "    status: {}", scalar(status));
    text.push_str("    accounts:\n");
    for entry in &person.entries {
        let instance = scalar(&sources[entry.source].instance);
        let id = quoted(&entry.account.id);
        match &entry.unusable {
            Some(reason) => {
                let _ = writeln!(
                    text,
                    "      # {instance}: {id}   # not imported: {}",
                    comment(reason)
                );
            }
            None if entry.account.live.status.as_str() == status => {
                let _ = writeln!(text, "      {instance}: {id}");
            }
            None => {
                let _ = writeln!(
                    text,
                    "      {instance}: {{ id: {id}, status: {} }}",
                    scalar(entry.account.live.status.as_str())
                );
            }
        }
    }
}

fn write_commented_person(text: &mut String, person: &Person, sources: &[Source]) {
    write_notes(text, person);
    let _ = writeln!(text, "  # {}", name_line(person));
    text.push_str("  #   accounts:\n");
    for entry in &person.entries {
        let _ = writeln!(
            text,
            "  #     {}: {}   # {}",
            scalar(&sources[entry.source].instance),
            quoted(&entry.account.id),
            comment(entry.unusable.as_deref().unwrap_or_default())
        );
    }
}

/// The status most of a user's written accounts have (the first account's on a tie):
/// the user's default, so only the others need their own.
fn common_status<'a>(person: &'a Person) -> &'a str {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for entry in person.written() {
        let status = entry.account.live.status.as_str();
        match counts.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => counts.push((status, 1)),
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
    counts
        .iter()
        .find(|(_, n)| *n == best)
        .map_or("active", |(s, _)| s)
}

/// Words a YAML 1.1 reader takes for something other than a string.
const SPECIAL: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];

/// A scalar as plain text when it is unmistakably a plain string (a lower-case letter,
/// then letters, digits, `.`, `_`, `-`), else as a [`quoted`] scalar.
fn scalar(text: &str) -> Cow<'_, str> {
    let mut chars = text.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && !SPECIAL.contains(&text);
    if plain {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(quoted(text))
    }
}

/// Whether `c` must be escaped in the files Roster writes: a character the loader
/// refuses, a line break of any YAML version, or an invisible one (see
/// [`escape::text`], whose set of hidden characters this shares).
fn must_escape(c: char) -> bool {
    if matches!(c, '\u{fffe}' | '\u{ffff}') {
        return true;
    }
    let mut buffer = [0u8; 4];
    c != '\\' && matches!(escape::text(c.encode_utf8(&mut buffer)), Cow::Owned(_))
}

/// A YAML double-quoted scalar holding exactly `text`: `"` and `\` escaped, and every
/// control, invisible or line-breaking character written as `\uXXXX` (`\UXXXXXXXX`
/// beyond the basic plane), so the file stays one valid line per value.
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if must_escape(c) => {
                let code = u32::from(c);
                if code <= 0xffff {
                    let _ = write!(out, "\\u{code:04X}");
                } else {
                    let _ = write!(out, "\\U{code:08X}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Provider text made safe for a YAML comment: one line, every control or invisible
/// character shown as an escape ([`escape::text`]), and the characters the loader
/// refuses escaped too.
pub fn comment(text: &str) -> String {
    escape::text(text)
        .chars()
        .map(|c| match c {
            '\u{fffe}' => "\\u{fffe}".to_string(),
            '\u{ffff}' => "\\u{ffff}".to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ObservedAccount, Refusal, RefusalScope, Status};
    use crate::provider;
    use std::path::{Path, PathBuf};

    fn spec(kind: &str) -> &'static KindSpec {
        &provider::kind(kind).expect("kind").spec
    }

    fn held(id: &str, login: Option<&str>, email: Option<&str>, status: &str) -> HeldAccount {
        HeldAccount {
            id: id.to_string(),
            aliases: Vec::new(),
            login: login.map(str::to_string),
            email: email.map(str::to_string),
            live: ObservedAccount::new(Status::new(status)),
        }
    }

    fn source(instance: &str, kind: &str, accounts: Vec<HeldAccount>) -> Source {
        Source {
            instance: instance.to_string(),
            kind: spec(kind),
            inventory: Inventory::Listed(accounts),
        }
    }

    const PROVIDERS: &str = "providers:
  atlan: { kind: atlan, base_url: https://a.example, auth: { bearer_token_env: A } }
  helpdesk: { kind: status-api, base_url: https://h.example, auth: { bearer_token_env: H } }
  zitadel: { kind: zitadel, base_url: https://z.example, auth: { bearer_token_env: Z } }
";

    /// Loads providers.yaml, `extra` user files and the import's files as one folder.
    fn load(import: &Import, extra: &[(&str, &str)]) -> DesiredState {
        let mut files: Vec<(PathBuf, Vec<u8>)> = vec![(
            PathBuf::from("providers.yaml"),
            PROVIDERS.as_bytes().to_vec(),
        )];
        for (path, text) in extra {
            files.push((PathBuf::from(path), text.as_bytes().to_vec()));
        }
        for file in &import.files {
            files.push((
                Path::new("imported").join(file.file_name()),
                file.text.as_bytes().to_vec(),
            ));
        }
        crate::desired::load_files(Path::new("ds"), files, crate::provider::specs()).unwrap_or_else(
            |invalid| {
                let texts: Vec<&str> = import.files.iter().map(|f| f.text.as_str()).collect();
                panic!("{invalid}\n{}", texts.join("\n---\n"))
            },
        )
    }

    /// `user -> [(instance, id, status)]` of a loaded folder.
    fn users(state: &DesiredState) -> BTreeMap<String, Vec<(String, String, String)>> {
        state
            .users
            .iter()
            .map(|u| {
                let accounts = u
                    .accounts
                    .iter()
                    .map(|a| (a.instance.clone(), a.id.clone(), a.status.to_string()))
                    .collect();
                (u.name.clone(), accounts)
            })
            .collect()
    }

    fn account(instance: &str, id: &str, status: &str) -> (String, String, String) {
        (instance.to_string(), id.to_string(), status.to_string())
    }

    fn three_kinds() -> Vec<Source> {
        vec![
            source(
                "atlan",
                "atlan",
                vec![
                    held(
                        "a-1",
                        Some("anna"),
                        Some("Anna.Schmidt@Example.com"),
                        "active",
                    ),
                    held("a-2", Some("ben"), Some("ben@example.com"), "inactive"),
                ],
            ),
            source(
                "helpdesk",
                "status-api",
                vec![
                    held(
                        "h-1",
                        Some("anna.s"),
                        Some("anna.schmidt@example.com"),
                        "suspended",
                    ),
                    held("h-2", Some("cy"), Some("cy@example.com"), "active"),
                ],
            ),
            source(
                "zitadel",
                "zitadel",
                vec![held(
                    "z-1",
                    Some("anna"),
                    Some("ANNA.SCHMIDT@example.com"),
                    "active",
                )],
            ),
        ]
    }

    #[test]
    fn accounts_are_joined_by_email_case_insensitively_into_the_first_instances_file() {
        let import = build(&three_kinds(), &Existing::default(), Join::Email);
        let state = load(&import, &[]);
        assert_eq!(
            users(&state),
            BTreeMap::from([
                (
                    "anna.schmidt".to_string(),
                    vec![
                        account("atlan", "a-1", "active"),
                        account("helpdesk", "h-1", "suspended"),
                        account("zitadel", "z-1", "active"),
                    ]
                ),
                ("ben".to_string(), vec![account("atlan", "a-2", "inactive")]),
                ("cy".to_string(), vec![account("helpdesk", "h-2", "active")]),
            ])
        );
        let names: Vec<(&str, usize, usize)> = import
            .files
            .iter()
            .map(|f| (f.instance.as_str(), f.users, f.accounts))
            .collect();
        assert_eq!(
            names,
            [("atlan", 2, 4), ("helpdesk", 1, 1), ("zitadel", 0, 0)]
        );
        assert!(import.files[2].text.contains("users: []\n"));
        assert_eq!(
            (
                import.summary.accounts,
                import.summary.users,
                import.summary.joined
            ),
            (5, 3, 1)
        );
        let atlan = &import.files[0].text;
        assert!(
            atlan.contains(
                "  - name: anna.schmidt   # Anna.Schmidt@Example.com\n    status: active\n    accounts:\n      atlan: \"a-1\"\n      helpdesk: { id: \"h-1\", status: suspended }\n      zitadel: \"z-1\"\n"
            ),
            "{atlan}"
        );
    }

    #[test]
    fn a_login_joins_only_where_one_side_has_no_email() {
        let sources = vec![
            source(
                "atlan",
                "atlan",
                vec![
                    held("a-1", Some("ci"), Some("ci@example.com"), "active"),
                    held("a-2", Some("dora"), Some("dora@a.example"), "active"),
                ],
            ),
            source(
                "zitadel",
                "zitadel",
                vec![
                    held("z-1", Some("CI"), None, "inactive"),
                    held("z-2", Some("dora"), Some("dora@b.example"), "active"),
                ],
            ),
        ];
        let email = users(&load(
            &build(&sources, &Existing::default(), Join::Email),
            &[],
        ));
        assert_eq!(
            email,
            BTreeMap::from([
                (
                    "ci".to_string(),
                    vec![
                        account("atlan", "a-1", "active"),
                        account("zitadel", "z-1", "inactive")
                    ]
                ),
                ("dora".to_string(), vec![account("atlan", "a-2", "active")]),
                (
                    "dora-2".to_string(),
                    vec![account("zitadel", "z-2", "active")]
                ),
            ]),
            "different emails are two people even with one login"
        );
        let login = users(&load(
            &build(&sources, &Existing::default(), Join::Login),
            &[],
        ));
        assert_eq!(login["dora"].len(), 2, "--join login joins by login alone");
        let none = build(&sources, &Existing::default(), Join::None);
        assert_eq!((none.summary.users, none.summary.joined), (4, 0));
    }

    #[test]
    fn one_email_at_two_accounts_of_one_instance_joins_nothing_and_says_why() {
        let sources = vec![
            source(
                "atlan",
                "atlan",
                vec![
                    held("a-1", None, Some("team@example.com"), "active"),
                    held("a-2", None, Some("Team@example.com"), "inactive"),
                ],
            ),
            source(
                "zitadel",
                "zitadel",
                vec![held("z-1", None, Some("team@example.com"), "active")],
            ),
        ];
        let import = build(&sources, &Existing::default(), Join::Email);
        let state = users(&load(&import, &[]));
        assert_eq!(state.len(), 3, "{state:?}");
        assert_eq!(state["team"], [account("atlan", "a-1", "active")]);
        assert_eq!(state["team-2"], [account("atlan", "a-2", "inactive")]);
        assert_eq!(state["team-3"], [account("zitadel", "z-1", "active")]);
        assert_eq!(import.summary.not_joined, 3);
        let note = "  # not joined: the email \"team@example.com\" links 2 accounts at one instance (\"a-1\", \"a-2\"), so Roster cannot tell whose is whose\n";
        assert_eq!(
            import.files[0].text.matches(note).count(),
            2,
            "{}",
            import.files[0].text
        );
        assert_eq!(import.files[1].text.matches(note).count(), 1);
    }

    #[test]
    fn statuses_no_kind_can_set_are_written_as_comments_with_the_reason() {
        let mut locked = held("z-1", Some("eve"), Some("eve@example.com"), "locked");
        locked.live.refusal = Some(Refusal {
            applies_to: RefusalScope::AnyChange,
            reason: "the user is locked in ZITADEL".to_string(),
        });
        let sources = vec![
            source(
                "atlan",
                "atlan",
                vec![
                    held("a-1", Some("eve"), Some("eve@example.com"), "active"),
                    held("a-9", Some("ghost"), None, "unknown"),
                ],
            ),
            source("zitadel", "zitadel", vec![locked]),
        ];
        let import = build(&sources, &Existing::default(), Join::Email);
        let state = users(&load(&import, &[]));
        assert_eq!(
            state,
            BTreeMap::from([("eve".to_string(), vec![account("atlan", "a-1", "active")])])
        );
        let atlan = &import.files[0].text;
        assert!(
            atlan.contains("      # zitadel: \"z-1\"   # not imported: live status 'locked': the user is locked in ZITADEL\n"),
            "{atlan}"
        );
        assert!(
            atlan.contains("  # - name: ghost   # login ghost\n  #   accounts:\n  #     atlan: \"a-9\"   # live status 'unknown': a atlan instance cannot be set to it\n"),
            "{atlan}"
        );
        assert_eq!(import.summary.commented.len(), 2);
        assert_eq!((import.summary.users, import.summary.accounts), (1, 1));
    }

    #[test]
    fn claimed_accounts_are_skipped_under_any_alias_and_names_stay_unique() {
        let mut by_identifier = held("h-1", Some("ann"), Some("ann@example.com"), "active");
        by_identifier.aliases = vec!["ann".to_string()];
        let sources = vec![
            source(
                "atlan",
                "atlan",
                vec![held("a-1", None, Some("ann@example.com"), "active")],
            ),
            source(
                "helpdesk",
                "status-api",
                vec![by_identifier, held("h-2", Some("bo"), None, "risky")],
            ),
        ];
        let people = "users:\n  - name: ann\n    status: active\n    accounts: { helpdesk: ann }\n";
        let mut existing = Existing::default();
        existing.claim("helpdesk", "ann", "ann");
        existing.name("ann");
        let import = build(&sources, &existing, Join::Email);
        let state = users(&load(&import, &[("people.yaml", people)]));
        assert_eq!(state["ann-2"], [account("atlan", "a-1", "active")]);
        assert!(
            import.files[0].text.contains("  # 'ann@example.com' is also on an account of the user 'ann' that a file already holds: if this is the same person, move these accounts to that user\n  - name: ann-2   # ann@example.com\n"),
            "{}",
            import.files[0].text
        );
        assert_eq!(import.summary.known_elsewhere, 1);
        assert_eq!(state["bo"], [account("helpdesk", "h-2", "risky")]);
        assert_eq!(
            import.summary.claimed,
            BTreeMap::from([("helpdesk".to_string(), 1)])
        );
    }

    #[test]
    fn an_id_that_names_two_records_is_a_comment_not_an_entry() {
        let mut other = held("h-2", None, None, "active");
        other.aliases = vec!["h-1".to_string()];
        let sources = vec![source(
            "helpdesk",
            "status-api",
            vec![held("h-1", None, None, "active"), other],
        )];
        let import = build(&sources, &Existing::default(), Join::Email);
        let state = users(&load(&import, &[]));
        assert_eq!(state.len(), 1, "{state:?}");
        assert_eq!(state["user-h-2"], [account("helpdesk", "h-2", "active")]);
        assert!(import.files[0].text.contains("names more than one account"));
    }

    #[test]
    fn the_output_does_not_depend_on_the_listing_order() {
        let forward = build(&three_kinds(), &Existing::default(), Join::Email);
        let mut reversed = three_kinds();
        for source in &mut reversed {
            if let Inventory::Listed(accounts) = &mut source.inventory {
                accounts.reverse();
            }
        }
        assert_eq!(build(&reversed, &Existing::default(), Join::Email), forward);
    }

    #[test]
    fn an_instance_that_cannot_list_gets_no_file_and_is_named() {
        let sources = vec![Source {
            instance: "backup".to_string(),
            kind: spec("acronis"),
            inventory: Inventory::CannotList {
                reason: "needs tenant_id".to_string(),
            },
        }];
        let import = build(&sources, &Existing::default(), Join::Email);
        assert!(import.files.is_empty());
        let lines = import.summary.lines(&[]);
        assert!(
            lines.contains(
                &"Cannot list backup, nothing imported from it: needs tenant_id".to_string()
            ),
            "{lines:?}"
        );
    }

    #[test]
    fn user_names_are_made_from_provider_text_safely() {
        let cases = [
            ("anna.schmidt", "anna.schmidt"),
            ("Anna Schmidt", "anna-schmidt"),
            ("Jürgen_Öz", "jürgen_öz"),
            ("--x--", "x"),
            ("a\u{1b}[2Jb\n- name: forged", "a-2jb-name-forged"),
            ("\u{202e}evil", "evil"),
            ("...", ""),
            ("", ""),
        ];
        for (text, expected) in cases {
            assert_eq!(user_name(text), expected, "{text:?}");
        }
        assert_eq!(user_name(&"x".repeat(200)).chars().count(), MAX_NAME);
        let mut taken = HashSet::from(["ann".to_string(), "ann-2".to_string()]);
        assert_eq!(unique("ann", &mut taken), "ann-3");
        assert_eq!(unique("ann", &mut taken), "ann-4");
        assert_eq!(unique("bo", &mut taken), "bo");
    }

    #[test]
    fn scalars_are_plain_only_when_unmistakable() {
        assert_eq!(scalar("anna.schmidt"), "anna.schmidt");
        for text in [
            "true", "null", "no", "1234", "Anna", "a b", "a:b", "-x", "ümlaut",
        ] {
            assert!(scalar(text).starts_with('"'), "{text}");
        }
        assert_eq!(
            quoted("a\"b\\c\n\u{202e}\u{1F600}\u{E0041}"),
            "\"a\\\"b\\\\c\\u000A\\u202E\u{1F600}\\U000E0041\""
        );
        assert_eq!(comment("x\ny\u{ffff}"), "x\\ny\\u{ffff}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]
        /// Whatever a provider sends as ids, logins, emails and reasons, the files load as
        /// a valid folder, and every account written is there with its exact id and status.
        #[test]
        fn hostile_provider_text_never_forges_or_breaks_a_file(
            records in proptest::collection::vec(
                (any_text(), proptest::option::of(any_text()), proptest::option::of(any_text()), proptest::bool::ANY, any_text()),
                0..6,
            )
        ) {
            let accounts: Vec<HeldAccount> = records
                .iter()
                .map(|(id, login, email, active, reason)| {
                    let mut account = held(id, login.as_deref(), email.as_deref(), if *active { "active" } else { "locked" });
                    account.live.refusal = Some(Refusal { applies_to: RefusalScope::AnyChange, reason: reason.clone() });
                    account
                })
                .collect();
            let sources = vec![
                source("atlan", "atlan", accounts.clone()),
                source("zitadel", "zitadel", accounts),
            ];
            let import = build(&sources, &Existing::default(), Join::Email);
            let state = load(&import, &[]);
            let loaded: usize = state.users.iter().map(|u| u.accounts.len()).sum();
            proptest::prop_assert_eq!(loaded, import.summary.accounts);
            for user in &state.users {
                for account in &user.accounts {
                    proptest::prop_assert!(records.iter().any(|(id, _, _, active, _)| *id == account.id && *active));
                    proptest::prop_assert_eq!(account.status.as_str(), "active");
                }
            }
        }
    }

    /// Text with the characters that break YAML and terminals, and plain letters.
    fn any_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just("a".to_string()),
            Just("Z".to_string()),
            Just("@".to_string()),
            Just(".".to_string()),
            Just("\"".to_string()),
            Just("'".to_string()),
            Just("\\".to_string()),
            Just("\n- name: forged\n".to_string()),
            Just(": ".to_string()),
            Just(" #".to_string()),
            Just("~".to_string()),
            Just("\u{0}".to_string()),
            Just("\u{1b}[2J".to_string()),
            Just("\r".to_string()),
            Just("\t".to_string()),
            Just("\u{85}".to_string()),
            Just("\u{2028}".to_string()),
            Just("\u{202e}".to_string()),
            Just("\u{feff}".to_string()),
            Just("\u{ffff}".to_string()),
            Just("\u{1F600}".to_string()),
            Just("\u{E0041}".to_string()),
            Just("é".to_string()),
            Just("{x: [1]}".to_string()),
            Just("&a *a !!str".to_string()),
        ];
        proptest::collection::vec(piece, 0..5).prop_map(|p| p.concat())
    }
}
