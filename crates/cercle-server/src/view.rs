//! What reads see: the ledger as of its last durable group, never ahead of it.
//!
//! Every account is here, in memory (they are few, and every read needs one). Invoices
//! and histories live in the store's checkpoint; what changed since it is kept here until
//! the next checkpoint covers it, and reads merge the two. The writer publishes a group
//! here after its `fdatasync` and before it replies, so a firm that gets a receipt and
//! reads its balance sees the payment; nothing a reader sees can be lost by a crash.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use cercle_core::{Account, AccountId, FeeSchedule, Groups, Head, Invoice, InvoiceId, PublicKey, Roles};
use cercle_store::{Store, StoreError};

/// What a durable group changed: published to the view, then handed to the checkpointer.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The head after the group.
    pub head: Option<Head>,
    /// Every account and invoice the group changed, as they stand after it.
    pub accounts: Vec<Account>,
    pub invoices: Vec<Invoice>,
    /// Every (account, entry) pair the group's entries concern.
    pub history: Vec<(AccountId, u64)>,
    /// The ledger's totals after the group.
    pub account_count: u64,
    pub invoice_count: u64,
    /// The governance roles after the group, when it may have changed them.
    pub roles: Option<Roles>,
    /// The member groups after the group, when it may have changed them.
    pub groups: Option<Groups>,
    /// The fee schedule after the group, when it set one (a schedule is never unset).
    pub fees: Option<FeeSchedule>,
    /// The last period charged after the group, when it charged one.
    pub last_charge: Option<cercle_core::charges::LastCharge>,
}

impl Applied {
    /// Folds `later` into this: the later versions of records win.
    pub fn absorb(&mut self, later: Applied) {
        self.head = later.head.or(self.head);
        self.accounts.extend(later.accounts);
        self.invoices.extend(later.invoices);
        self.history.extend(later.history);
        self.account_count = later.account_count;
        self.invoice_count = later.invoice_count;
        self.roles = later.roles.or(self.roles.take());
        self.groups = later.groups.or(self.groups.take());
        self.fees = later.fees.or(self.fees.take());
        self.last_charge = later.last_charge.or(self.last_charge.take());
    }
}

#[derive(Debug)]
struct Durable {
    head: Option<Head>,
    /// Who administers and audits the ledger: what reads are authorised against.
    roles: Roles,
    /// The member groups: what the limits of the accounts that follow them resolve against.
    groups: Groups,
    /// The fee schedule, if one is set: what `GetLedgerInfo` shows.
    fees: Option<FeeSchedule>,
    accounts: BTreeMap<AccountId, Account>,
    /// Invoices changed since the last checkpoint.
    invoices: HashMap<InvoiceId, Invoice>,
    /// Invoices issued since the last checkpoint, by issue sequence.
    issued: BTreeMap<u64, InvoiceId>,
    /// Entries since the last checkpoint, per account, in order.
    history: HashMap<AccountId, Vec<u64>>,
}

/// The ledger as reads see it.
pub struct View {
    store: Arc<Store>,
    durable: RwLock<Durable>,
}

impl View {
    /// The view of a ledger whose accounts are `accounts`, with `pending` changed since the
    /// store's last checkpoint.
    pub fn new(
        store: Arc<Store>,
        head: Head,
        roles: Roles,
        groups: Groups,
        accounts: impl IntoIterator<Item = Account>,
        pending: &Applied,
    ) -> View {
        let durable = Durable {
            head: Some(head),
            roles,
            groups,
            fees: None,
            accounts: accounts.into_iter().map(|a| (a.id.clone(), a)).collect(),
            invoices: HashMap::new(),
            issued: BTreeMap::new(),
            history: HashMap::new(),
        };
        let view = View { store, durable: RwLock::new(durable) };
        view.publish(pending);
        view
    }

    fn read(&self) -> RwLockReadGuard<'_, Durable> {
        self.durable.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Durable> {
        self.durable.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a durable group's changes.
    pub fn publish(&self, applied: &Applied) {
        let mut d = self.write();
        if let Some(head) = applied.head {
            d.head = Some(head);
        }
        if let Some(roles) = &applied.roles {
            d.roles = roles.clone();
        }
        if let Some(groups) = &applied.groups {
            d.groups = groups.clone();
        }
        if let Some(fees) = &applied.fees {
            d.fees = Some(fees.clone());
        }
        for a in &applied.accounts {
            d.accounts.insert(a.id.clone(), a.clone());
        }
        for i in &applied.invoices {
            d.issued.insert(i.issued_at_sequence, i.id);
            d.invoices.insert(i.id, i.clone());
        }
        for (account, sequence) in &applied.history {
            let list = d.history.entry(account.clone()).or_default();
            if list.last().is_none_or(|last| last < sequence) {
                list.push(*sequence);
            }
        }
    }

    /// Forgets what the checkpoint at `size` now holds (it reads from the store instead).
    pub fn checkpointed(&self, size: u64) {
        let mut d = self.write();
        d.invoices.retain(|_, i| i.last_sequence > size);
        d.issued.retain(|&seq, _| seq > size);
        d.history.retain(|_, list| {
            list.retain(|&s| s > size);
            !list.is_empty()
        });
    }

    /// The administrators and auditors as of the last durable group.
    pub fn roles(&self) -> Roles {
        self.read().roles.clone()
    }

    /// The member groups as of the last durable group.
    pub fn groups(&self) -> Groups {
        self.read().groups.clone()
    }

    /// `account` as the wire shows it at `now_ms`, its limits resolved through the groups
    /// it was published with, its reservations those of the pending payments live then.
    pub fn wire_account(&self, id: &AccountId, now_ms: u64) -> Option<cercle_proto::Account> {
        let d = self.read();
        d.accounts.get(id).map(|a| cercle_proto::account_at(a, &d.groups, now_ms))
    }

    /// Every member group, by name, with its open members and those that follow its credit
    /// limit: one pass over the accounts in memory.
    pub fn groups_overview(&self) -> Vec<cercle_proto::MemberGroup> {
        let d = self.read();
        let mut counts: BTreeMap<&cercle_core::GroupName, (u64, u64)> = BTreeMap::new();
        for a in d.accounts.values().filter(|a| a.status != cercle_core::AccountStatus::Closed) {
            if let Some(m) = &a.membership {
                let c = counts.entry(&m.group).or_default();
                c.0 += 1;
                c.1 += u64::from(m.credit_from_group);
            }
        }
        d.groups
            .iter()
            .map(|g| {
                let (members, following) = counts.get(&g.name).copied().unwrap_or_default();
                cercle_proto::MemberGroup {
                    group: g.name.to_string(),
                    credit_limit_minor: g.credit_limit_minor,
                    max_balance_minor: g.max_balance_minor,
                    created_at_sequence: g.created_at_sequence,
                    last_sequence: g.last_sequence,
                    members,
                    following_credit_limit: following,
                }
            })
            .collect()
    }
    /// The fee schedule as of the last durable group.
    pub fn fees(&self) -> Option<FeeSchedule> {
        self.read().fees.clone()
    }

    /// Sets the fee schedule the view starts with (the recovered state's).
    pub fn set_fees(&self, fees: Option<FeeSchedule>) {
        self.write().fees = fees;
    }

    /// The head of the durable log and the limits that bind `id` there (its own, or its
    /// group's when it follows them), read together: what a statement cut at that head
    /// attests.
    pub fn limits_at_head(&self, id: &AccountId) -> (Option<Head>, Option<cercle_core::Limits>) {
        let d = self.read();
        (d.head, d.accounts.get(id).map(|a| d.groups.limits_of(a)))
    }

    /// The head of the durable log, as published.
    pub fn head(&self) -> Option<Head> {
        self.read().head
    }

    pub fn account(&self, id: &AccountId) -> Option<Account> {
        self.read().accounts.get(id).cloned()
    }

    /// Every account, in handle order, after `after` (exclusive), up to `limit`.
    pub fn accounts_page(&self, after: Option<&AccountId>, limit: usize) -> Vec<Account> {
        let d = self.read();
        let range = match after {
            Some(a) => {
                d.accounts.range::<AccountId, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
            }
            None => d.accounts.range::<AccountId, _>(..),
        };
        range.take(limit).map(|(_, a)| a.clone()).collect()
    }

    /// Runs `f` over every account, in handle order, under the read lock: for an overview
    /// that filters and sorts them all without copying them first.
    pub fn with_accounts<R>(
        &self,
        f: impl FnOnce(std::collections::btree_map::Values<'_, AccountId, Account>, &Groups) -> R,
    ) -> R {
        let d = self.read();
        f(d.accounts.values(), &d.groups)
    }

    /// The accounts that list `key` among their keys, in handle order, up to `limit`.
    /// A scan of the accounts in memory (tens of thousands in a circuit: well under a
    /// millisecond), so no second index has to be kept in step with key rotations.
    pub fn accounts_holding(&self, key: &PublicKey, limit: usize) -> Vec<cercle_proto::Account> {
        let d = self.read();
        d.accounts
            .values()
            .filter(|a| a.keys.contains(key))
            .take(limit)
            .map(|a| cercle_proto::wire_account(a, &d.groups))
            .collect()
    }

    pub fn account_count(&self) -> usize {
        self.read().accounts.len()
    }

    pub fn invoice(&self, id: &InvoiceId) -> Result<Option<Invoice>, StoreError> {
        if let Some(i) = self.read().invoices.get(id) {
            return Ok(Some(i.clone()));
        }
        let stored = self.store.invoice(id)?;
        // A checkpoint may have been written between the two reads: look again.
        Ok(self.read().invoices.get(id).cloned().or(stored))
    }

    /// Up to `limit` sequences of `account`'s history after `after`, oldest first.
    pub fn history(&self, account: &AccountId, after: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let recent: Vec<u64> = self.read().history.get(account).cloned().unwrap_or_default();
        let stored = self.store.history(account, after, limit)?;
        Ok(merge(stored, recent.into_iter().filter(|&s| s > after), limit, false))
    }

    /// Up to `limit` sequences of `account`'s history before `before`, newest first.
    pub fn history_back(
        &self,
        account: &AccountId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let recent: Vec<u64> = self.read().history.get(account).cloned().unwrap_or_default();
        let stored = self.store.history_back(account, before, limit)?;
        Ok(merge(stored, recent.into_iter().rev().filter(|&s| s < before), limit, true))
    }

    /// Up to `limit` invoices of `account` issued after `after_sequence`, oldest first.
    pub fn account_invoices(
        &self,
        account: &AccountId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Invoice>, StoreError> {
        let recent: Vec<(u64, InvoiceId)> = {
            let d = self.read();
            d.issued
                .range(after.saturating_add(1)..)
                .filter(|(_, id)| {
                    d.invoices.get(id).is_some_and(|i| &i.payer == account || &i.payee == account)
                })
                .map(|(s, id)| (*s, *id))
                .collect()
        };
        let stored = self.store.account_invoices(account, after, limit)?;
        self.invoices_of(stored, recent, limit)
    }

    /// Up to `limit` invoices of the whole ledger issued after `after`, in issue order.
    pub fn all_invoices(&self, after: u64, limit: usize) -> Result<Vec<Invoice>, StoreError> {
        let recent: Vec<(u64, InvoiceId)> =
            self.read().issued.range(after.saturating_add(1)..).map(|(s, id)| (*s, *id)).collect();
        let stored = self.store.all_invoices(after, limit)?;
        self.invoices_of(stored, recent, limit)
    }

    fn invoices_of(
        &self,
        stored: Vec<(u64, InvoiceId)>,
        recent: Vec<(u64, InvoiceId)>,
        limit: usize,
    ) -> Result<Vec<Invoice>, StoreError> {
        let mut all: BTreeMap<u64, InvoiceId> = stored.into_iter().collect();
        all.extend(recent);
        let mut out = Vec::with_capacity(limit.min(all.len()));
        for id in all.values().take(limit) {
            match self.invoice(id)? {
                Some(i) => out.push(i),
                None => {
                    return Err(StoreError::Corrupt {
                        key: id.to_string(),
                        reason: "an index names a missing invoice".into(),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Merges two sorted lists of sequences (both ascending, or both descending with `desc`),
/// without duplicates, keeping the first `limit`.
fn merge(a: Vec<u64>, b: impl Iterator<Item = u64>, limit: usize, desc: bool) -> Vec<u64> {
    let mut all: Vec<u64> = a;
    all.extend(b);
    if desc {
        all.sort_unstable_by(|x, y| y.cmp(x));
    } else {
        all.sort_unstable();
    }
    all.dedup();
    all.truncate(limit);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_sequences_are_ordered_without_repeats() {
        assert_eq!(merge(vec![1, 3, 5], [5, 6, 8].into_iter(), 4, false), [1, 3, 5, 6]);
        assert_eq!(merge(vec![9, 7], [7, 4].into_iter(), 10, true), [9, 7, 4]);
    }
}
