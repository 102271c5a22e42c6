//! Invoices and clearing runs through the pure core: the life of an invoice, the refusals
//! that name their numbers, clearing with and without credit, and replays that refuse a
//! tampered clearing record.

use cercle_clearing::{ArcRef, CertificateError};
use cercle_core::clearing::{self, ChangesSince, ClearingDefect, ClearingRecord, ClearingSnapshot};
use cercle_core::sign::Keypair;
use cercle_core::{
    AccountId, ClearingInput, Entry, Envelope, Executed, Genesis, GroupLimits, GroupName, InvoiceId,
    InvoiceParties, InvoiceState, IssueInvoice, Ledger, LedgerId, OpKind, Operation, OperationId,
    RegisterAccount, RejectCode, Rejection, Replayer, RunClearing, SectionTag, SetGroupLimits, State,
    Transfer,
};

const FIRMS: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

struct World {
    genesis: Genesis,
    keys: Vec<Keypair>,
    ledger: Ledger,
    /// The state before the last operation was executed.
    before_last: State,
    entries: Vec<Entry>,
    ops: Vec<Operation>,
    next_id: u64,
    /// What changed since a clearing snapshot, as the node's writer gathers it.
    changes: Option<ChangesSince>,
}

fn id(name: &str) -> AccountId {
    AccountId::parse(name).unwrap()
}

fn invoice_id(n: u8) -> InvoiceId {
    InvoiceId([n; 16])
}

impl World {
    /// Four firms, each with a credit limit of `limit_minor`.
    fn new(limit_minor: i64) -> World {
        let admin = Keypair::from_seed(&[1; 32]);
        let genesis = Genesis {
            ledger_id: LedgerId([9; 16]),
            currency: "CHW".into(),
            exponent: 2,
            admin_keys: vec![admin.public_key()],
            auditor_keys: vec![],
            node_key: Keypair::from_seed(&[3; 32]).public_key(),
            quorum: 1,
            day_offset_minutes: 0,
        };
        let keys: Vec<Keypair> = (0..FIRMS.len()).map(|i| Keypair::from_seed(&[10 + i as u8; 32])).collect();
        let ledger = Ledger::new(genesis.clone());
        let before_last = ledger.state().clone();
        let mut world = World {
            genesis,
            keys,
            ledger,
            before_last,
            entries: Vec::new(),
            ops: Vec::new(),
            next_id: 1,
            changes: None,
        };
        for (i, name) in FIRMS.iter().enumerate() {
            let kind = OpKind::RegisterAccount(RegisterAccount {
                account: id(name),
                display_name: name.to_string(),
                keys: vec![world.keys[i].public_key()],
                credit_limit_minor: limit_minor,
                max_balance_minor: None,
                profile: Default::default(),
                allow_shared_key: false,
            });
            world.admin_op(kind).unwrap();
        }
        world
    }

    fn key_of(&self, firm: &str) -> &Keypair {
        &self.keys[FIRMS.iter().position(|f| *f == firm).unwrap()]
    }

    fn run(&mut self, signer: &Keypair, kind: OpKind) -> Result<Entry, Rejection> {
        self.run_with(signer, kind, ClearingInput::Propose)
    }

    fn run_with(
        &mut self,
        signer: &Keypair,
        kind: OpKind,
        input: ClearingInput<'_>,
    ) -> Result<Entry, Rejection> {
        self.next_id += 1;
        let op = Operation { id: OperationId([self.next_id as u8; 16]), valid_until_ms: 100_000, kind };
        let body = cercle_core::body::encode(&op);
        let signature = signer.sign_op(&self.genesis.ledger_id, &body);
        let envelope = Envelope::single(body, signer.public_key(), signature);
        let before = self.ledger.state().clone();
        let entry = match self.ledger.execute_with(1_000 + self.next_id, envelope, &op, input)? {
            Executed::Accepted { entry, effects } => {
                if let Some(changes) = self.changes.as_mut() {
                    changes.add(&effects);
                }
                entry
            }
            Executed::Duplicate { sequence } => panic!("a duplicate of entry {sequence}"),
        };
        self.before_last = before;
        self.entries.push(entry.clone());
        self.ops.push(op);
        Ok(entry)
    }

    fn admin_op(&mut self, kind: OpKind) -> Result<Entry, Rejection> {
        let admin = Keypair::from_seed(&[1; 32]);
        self.run(&admin, kind)
    }

    fn as_firm(&mut self, firm: &str, kind: OpKind) -> Result<Entry, Rejection> {
        let key = Keypair::from_seed(&self.key_of(firm).seed());
        self.run(&key, kind)
    }

    /// `payee` invoices `payer` for `amount_minor` (all of it local), and `payer` accepts.
    fn obligation(&mut self, n: u8, payee: &str, payer: &str, amount_minor: i64, due_day: Option<u32>) {
        self.issue(n, payee, payer, amount_minor, 100, due_day).unwrap();
        self.as_firm(payer, OpKind::AcceptInvoice(parties(n, payee, payer))).unwrap();
    }

    fn issue(
        &mut self,
        n: u8,
        payee: &str,
        payer: &str,
        amount_minor: i64,
        local_share_percent: u8,
        due_day: Option<u32>,
    ) -> Result<Entry, Rejection> {
        self.as_firm(
            payee,
            OpKind::IssueInvoice(IssueInvoice {
                invoice: invoice_id(n),
                payee: id(payee),
                payer: id(payer),
                amount_minor,
                local_share_percent,
                due_day,
                reference: format!("F-{n}"),
                excluded_from_clearing: false,
            }),
        )
    }

    fn open(&self, n: u8) -> i64 {
        self.ledger.state().invoice(&invoice_id(n)).unwrap().open_minor()
    }

    fn state_of(&self, n: u8) -> InvoiceState {
        self.ledger.state().invoice(&invoice_id(n)).unwrap().state
    }

    fn balance(&self, firm: &str) -> i64 {
        self.ledger.state().account(&id(firm)).unwrap().balance_minor
    }

    fn clear(&mut self, with_credit: bool) -> Result<Entry, Rejection> {
        self.admin_op(OpKind::RunClearing(RunClearing { with_credit, reason: "monthly".into() }))
    }

    /// The clearing record an entry carries.
    fn record_of(entry: &Entry) -> ClearingRecord {
        ClearingRecord::from_section(entry.section(SectionTag::Clearing).expect("a clearing entry"))
            .expect("a well-formed record")
    }

    /// Replays the whole log, as an auditor does, with the last entry's record replaced
    /// (written out as the node writes it, from the state's invoices and balances).
    fn replay_with_last_record(&self, record: Option<ClearingRecord>) -> Result<(), String> {
        let mut replayer = Replayer::new(self.genesis.clone(), true);
        let last = self.entries.len() - 1;
        let state = self.ledger.state();
        for (i, entry) in self.entries.iter().enumerate() {
            let mut entry = entry.clone();
            if i == last {
                entry.sections = record
                    .iter()
                    .map(|r| {
                        r.to_section(
                            |id| state.invoice(id).map(|i| (&i.payer, &i.payee)),
                            |a| state.account(a).map(|a| a.balance_minor),
                        )
                    })
                    .collect();
            }
            replayer.replay(&entry).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Why `record`, put in place of the last entry's (a clearing run with or without
    /// credit), is refused: by the check on its own, and by an auditor's replay for the
    /// same reason.
    #[track_caller]
    fn defect(&self, record: ClearingRecord, with_credit: bool) -> ClearingDefect {
        let rejection =
            clearing::check(&self.before_last, with_credit, &record).expect_err("a refused record");
        let Rejection::ClearingInvalid { defect } = rejection else {
            panic!("refused as {rejection:?}, not as an invalid clearing");
        };
        let defect = *defect;
        let replayed = self.replay_with_last_record(Some(record)).expect_err("the replay refuses it");
        assert!(replayed.contains(&defect.to_string()), "{replayed:?} does not say {defect}");
        defect
    }
}

/// The certificate shows the amounts cannot be: out of bounds, or a net position changed.
fn infeasible(e: &CertificateError) -> bool {
    matches!(
        e,
        CertificateError::NegativeFlow { .. }
            | CertificateError::OverCapacity { .. }
            | CertificateError::Unbalanced { .. }
    )
}

/// The amounts could be, but the potentials do not prove them optimal.
fn not_optimal(e: &CertificateError) -> bool {
    matches!(
        e,
        CertificateError::NotOptimalBelowCapacity { .. } | CertificateError::NotOptimalAboveZero { .. }
    )
}

fn parties(n: u8, payee: &str, payer: &str) -> InvoiceParties {
    InvoiceParties { invoice: invoice_id(n), payee: id(payee), payer: id(payer) }
}

fn pay(n: u8, payer: &str, payee: &str, amount_minor: i64) -> OpKind {
    OpKind::Transfer(Transfer {
        payer: id(payer),
        payee: id(payee),
        amount_minor,
        memo: String::new(),
        invoice_ref: None,
        invoice: Some(invoice_id(n)),
    })
}

#[track_caller]
fn rejected(result: Result<Entry, Rejection>, code: RejectCode, needle: &str) {
    let rejection = result.expect_err("the operation should be refused");
    let message = rejection.message("CHW", 2);
    assert_eq!(rejection.code(), code, "{message}");
    assert!(message.contains(needle), "{message:?} does not mention {needle:?}");
}

#[test]
fn an_invoice_lives_from_issue_to_settlement() {
    let mut w = World::new(100_000);
    w.issue(1, "alpha", "beta", 10_001, 30, Some(20_800)).unwrap();
    let invoice = w.ledger.state().invoice(&invoice_id(1)).unwrap().clone();
    assert_eq!(
        (invoice.local_minor(), invoice.national_minor(), invoice.open_minor()),
        (3_000, 7_001, 3_000)
    );
    assert_eq!(invoice.state, InvoiceState::Issued);

    // Only the payer accepts, only the payee cancels, and the parties must match.
    rejected(
        w.as_firm("alpha", OpKind::AcceptInvoice(parties(1, "alpha", "beta"))),
        RejectCode::NotAccountKey,
        "beta",
    );
    rejected(
        w.as_firm("beta", OpKind::AcceptInvoice(parties(1, "alpha", "gamma"))),
        RejectCode::InvoicePartiesMismatch,
        "not from 'alpha' to 'gamma'",
    );
    rejected(
        w.as_firm("beta", OpKind::AcceptInvoice(parties(9, "alpha", "beta"))),
        RejectCode::UnknownInvoice,
        "unknown invoice",
    );
    rejected(w.issue(1, "alpha", "beta", 5, 100, None), RejectCode::InvoiceExists, "already exists");
    w.as_firm("beta", OpKind::AcceptInvoice(parties(1, "alpha", "beta"))).unwrap();
    assert_eq!(w.state_of(1), InvoiceState::Accepted);
    rejected(
        w.as_firm("beta", OpKind::AcceptInvoice(parties(1, "alpha", "beta"))),
        RejectCode::InvoiceStateConflict,
        "is accepted: it cannot be accepted",
    );

    // Payments: in part, never more than is open, only from the payer to the payee.
    w.as_firm("beta", pay(1, "beta", "alpha", 1_000)).unwrap();
    assert_eq!((w.state_of(1), w.open(1)), (InvoiceState::PartlySettled, 2_000));
    rejected(
        w.as_firm("beta", pay(1, "beta", "alpha", 2_001)),
        RejectCode::InvoiceOverpaid,
        "exceeds what remains open",
    );
    // To a firm that is not a party the invoice does not exist (issue #10: its parties
    // were readable by anyone who knew its id); a party learns what is wrong.
    rejected(w.as_firm("gamma", pay(1, "gamma", "alpha", 1)), RejectCode::UnknownInvoice, "unknown invoice");
    rejected(
        w.as_firm("beta", pay(1, "beta", "gamma", 1)),
        RejectCode::InvoicePartiesMismatch,
        "owed by 'beta'",
    );
    rejected(
        w.as_firm(
            "alpha",
            OpKind::CancelInvoice { invoice: parties(1, "alpha", "beta"), reason: String::new() },
        ),
        RejectCode::InvoiceStateConflict,
        "partly settled: it cannot be cancelled",
    );
    w.as_firm("beta", pay(1, "beta", "alpha", 2_000)).unwrap();
    assert_eq!((w.state_of(1), w.open(1)), (InvoiceState::Settled, 0));
    assert_eq!((w.balance("beta"), w.balance("alpha")), (-3_000, 3_000));
    rejected(w.as_firm("beta", pay(1, "beta", "alpha", 1)), RejectCode::InvoiceStateConflict, "is settled");

    // Rejection needs a reason; cancellation of an untouched invoice works.
    w.issue(2, "alpha", "beta", 500, 100, None).unwrap();
    rejected(
        w.as_firm("beta", OpKind::RejectInvoice { invoice: parties(2, "alpha", "beta"), reason: " ".into() }),
        RejectCode::InvalidText,
        "a reason is required",
    );
    w.as_firm(
        "beta",
        OpKind::RejectInvoice { invoice: parties(2, "alpha", "beta"), reason: "not ordered".into() },
    )
    .unwrap();
    assert_eq!(w.state_of(2), InvoiceState::Rejected);
    w.issue(3, "alpha", "beta", 500, 100, None).unwrap();
    w.as_firm("alpha", OpKind::CancelInvoice { invoice: parties(3, "alpha", "beta"), reason: "typo".into() })
        .unwrap();
    assert_eq!((w.state_of(3), w.open(3)), (InvoiceState::Cancelled, 0));

    // Bad values are refused before the state is looked at.
    rejected(w.issue(4, "alpha", "beta", 0, 100, None), RejectCode::InvalidAmount, "must be positive");
    rejected(w.issue(4, "alpha", "beta", 1_000, 0, None), RejectCode::InvalidInvoice, "1 to 100");
    rejected(w.issue(4, "alpha", "beta", 1, 50, None), RejectCode::InvalidInvoice, "rounds down to nothing");
    rejected(
        w.issue(4, "alpha", "alpha", 1_000, 100, None),
        RejectCode::InvalidInvoice,
        "cannot invoice itself",
    );
    rejected(
        w.issue(4, "alpha", "beta", 10_000_000_000_001, 100, None),
        RejectCode::InvalidInvoice,
        "the maximum is",
    );
    rejected(w.issue(4, "alpha", "zeta", 1_000, 100, None), RejectCode::UnknownAccount, "zeta");

    // The whole history replays, invoices included.
    w.replay_with_last_record(None).unwrap();
}

#[test]
fn clearing_cancels_the_cycle_and_moves_no_money() {
    let mut w = World::new(0);
    // beta owes alpha 100, gamma owes beta 70, alpha owes gamma 50: a cycle of 50.
    w.obligation(1, "alpha", "beta", 10_000, None);
    w.obligation(2, "beta", "gamma", 7_000, None);
    w.obligation(3, "gamma", "alpha", 5_000, None);
    // An excluded invoice and an invoice that is only issued are not obligations of a run.
    w.obligation(4, "beta", "alpha", 9_000, None);
    w.as_firm("alpha", OpKind::SetInvoiceClearing { invoice: parties(4, "beta", "alpha"), excluded: true })
        .unwrap();
    // The flag is not public: to a firm that is not a party the invoice does not exist,
    // whether or not the change would change anything; wrongly named parties are refused.
    for excluded in [true, false] {
        let set = |invoice| OpKind::SetInvoiceClearing { invoice, excluded };
        rejected(w.as_firm("gamma", set(parties(4, "beta", "alpha"))), RejectCode::UnknownInvoice, "unknown");
        rejected(
            w.as_firm("alpha", set(parties(4, "gamma", "alpha"))),
            RejectCode::InvoicePartiesMismatch,
            "not from 'gamma'",
        );
    }
    rejected(
        w.as_firm(
            "beta",
            OpKind::SetInvoiceClearing { invoice: parties(4, "beta", "alpha"), excluded: true },
        ),
        RejectCode::NothingToChange,
        "",
    );
    w.issue(5, "alpha", "gamma", 3_000, 100, None).unwrap();
    let balances: Vec<i64> = FIRMS.iter().map(|f| w.balance(f)).collect();

    let entry = w.clear(false).unwrap();
    let record = World::record_of(&entry);
    assert_eq!((w.open(1), w.open(2), w.open(3)), (5_000, 2_000, 0));
    assert_eq!((w.state_of(1), w.state_of(3)), (InvoiceState::PartlySettled, InvoiceState::Settled));
    assert_eq!((w.open(4), w.open(5)), (9_000, 3_000), "excluded and unaccepted invoices are untouched");
    assert_eq!(FIRMS.iter().map(|f| w.balance(f)).collect::<Vec<_>>(), balances, "set-off moves no money");
    assert!(entry.balances_after.is_empty());
    let cleared: i64 = record.invoices.iter().map(|c| c.setoff_minor).sum();
    assert_eq!(cleared, 15_000);
    w.replay_with_last_record(Some(record.clone())).unwrap();

    // A second run finds nothing left to clear.
    rejected(w.clear(false), RejectCode::NothingToClear, "nothing to clear");
    // Only an administrator runs clearing.
    rejected(
        w.as_firm("alpha", OpKind::RunClearing(RunClearing { with_credit: false, reason: String::new() })),
        RejectCode::NotAdministrator,
        "administrator",
    );
}

#[test]
fn a_tampered_clearing_record_is_refused_on_replay() {
    let mut w = World::new(0);
    w.obligation(1, "alpha", "beta", 10_000, None);
    w.obligation(2, "beta", "gamma", 7_000, None);
    w.obligation(3, "gamma", "alpha", 5_000, None);
    let record = World::record_of(&w.clear(false).unwrap());
    w.replay_with_last_record(Some(record.clone())).unwrap();
    clearing::check(&w.before_last, false, &record).expect("the node's own record passes");
    let defect = |change: &dyn Fn(&mut ClearingRecord)| {
        let mut bad = record.clone();
        change(&mut bad);
        w.defect(bad, false)
    };
    // Feasible but not optimal: 10 less around the whole cycle.
    let d = defect(&|r| r.invoices.iter_mut().for_each(|c| c.setoff_minor -= 1_000));
    assert!(matches!(&d, ClearingDefect::SetOff(e) if not_optimal(e)), "{d:?}");
    // Infeasible: one obligation cleared less than the others (net positions change).
    let d = defect(&|r| r.invoices[0].setoff_minor -= 1);
    assert!(matches!(&d, ClearingDefect::SetOff(CertificateError::Unbalanced { .. })), "{d:?}");
    assert!(matches!(&d, ClearingDefect::SetOff(e) if infeasible(e)));
    // More cleared than is open on an invoice.
    let d = defect(&|r| r.invoices[0].setoff_minor += 10_000);
    assert!(matches!(d, ClearingDefect::MoreThanOpen { .. }), "{d:?}");
    // A potential changed: the certificate no longer proves optimality.
    let d = defect(&|r| r.firms[0].setoff_potential += 5);
    assert!(matches!(&d, ClearingDefect::SetOff(e) if not_optimal(e)), "{d:?}");
    // An invoice that is not an obligation, a firm marked unchanged, a payment in a run
    // without credit, and a missing record.
    // An unknown invoice cannot even be placed in its firms' parts: the check names it, the
    // replay refuses the entry's encoding before it gets that far.
    let mut unknown = record.clone();
    unknown.invoices[0].invoice = invoice_id(77);
    let rejection = clearing::check(&w.before_last, false, &unknown).expect_err("refused");
    assert!(
        matches!(&rejection, Rejection::ClearingInvalid { defect }
            if **defect == ClearingDefect::NotAnObligation { invoice: invoice_id(77) }),
        "{rejection:?}"
    );
    let err = w.replay_with_last_record(Some(unknown)).unwrap_err();
    assert!(err.contains("not in exactly its two firms' parts"), "{err}");
    assert_eq!(defect(&|r| r.firms[1].changed = false), ClearingDefect::WrongChangedFirms);
    assert_eq!(defect(&|r| r.firms[0].payment_minor = 1), ClearingDefect::PaymentWithoutCredit);
    // Out of order: the check names it; in the entry the parts put the invoices back in
    // order, so what the replay finds is an outcome that differs from the recorded one.
    let mut swapped = record.clone();
    swapped.invoices.swap(0, 1);
    let rejection = clearing::check(&w.before_last, false, &swapped).expect_err("refused");
    assert!(
        matches!(&rejection, Rejection::ClearingInvalid { defect }
            if **defect == ClearingDefect::InvoicesOutOfOrder),
        "{rejection:?}"
    );
    assert!(w.replay_with_last_record(Some(swapped)).is_err());
    let err = w.replay_with_last_record(None).unwrap_err();
    assert!(err.contains(&ClearingDefect::NoRecord.to_string()), "{err}");
}

#[test]
fn clearing_allocates_a_pair_oldest_due_first() {
    let mut w = World::new(0);
    w.obligation(1, "alpha", "beta", 4_000, None);
    w.obligation(2, "alpha", "beta", 4_000, Some(20_000));
    w.obligation(3, "alpha", "beta", 4_000, Some(19_000));
    w.obligation(4, "beta", "alpha", 6_000, None);
    let record = World::record_of(&w.clear(false).unwrap());
    // 6,000 of beta's 12,000 to alpha is cleared: the invoice due first, then the next.
    assert_eq!((w.open(3), w.open(2), w.open(1), w.open(4)), (0, 2_000, 4_000, 0));
    // The same amount for the pair, the same net positions, but allocated to the later
    // invoice first: refused for the allocation alone.
    let mut bad = record.clone();
    let amount =
        |r: &ClearingRecord, n: u8| r.invoices.iter().position(|c| c.invoice == invoice_id(n)).unwrap();
    let (second, third) = (amount(&record, 2), amount(&record, 3));
    assert_eq!((bad.invoices[second].setoff_minor, bad.invoices[third].setoff_minor), (2_000, 4_000));
    bad.invoices[second].setoff_minor = 4_000;
    bad.invoices[third].setoff_minor = 2_000;
    assert_eq!(w.defect(bad, false), ClearingDefect::WrongAllocation);
}

#[test]
fn clearing_with_credit_settles_a_chain_within_the_limits() {
    let mut w = World::new(3_000);
    // alpha owes beta 50, beta owes gamma 50: no cycle, set-off clears nothing.
    w.obligation(1, "beta", "alpha", 5_000, None);
    w.obligation(2, "gamma", "beta", 5_000, None);
    rejected(w.clear(false), RejectCode::NothingToClear, "2 eligible obligations");
    // With credit: alpha pays what its limit allows (30) into the circuit, which settles 30
    // of each obligation along the chain; beta pays the 20 it still owes gamma; gamma
    // receives 50. Alpha's last 20 stay open: its credit is used up.
    let entry = w.clear(true).unwrap();
    assert_eq!((w.open(1), w.open(2)), (2_000, 0));
    assert_eq!((w.balance("alpha"), w.balance("beta"), w.balance("gamma")), (-3_000, -2_000, 5_000));
    let record = World::record_of(&entry);
    let section = entry.section(SectionTag::Clearing).unwrap();
    let paid: Vec<Option<i64>> = section.parts[1..]
        .iter()
        .map(|p| cercle_core::clearing::FirmPart::decode(p).unwrap().balance_after)
        .collect();
    assert_eq!(paid, [Some(-3_000), Some(-2_000), Some(5_000)], "each firm's part holds its balance after");
    assert!(entry.balances_after.is_empty(), "balances of a run are in the firms' parts");
    assert_eq!(record.invoices.iter().map(|c| c.credit_minor).sum::<i64>(), 8_000);
    w.replay_with_last_record(Some(record.clone())).unwrap();
    // A payment beyond alpha's credit limit is refused on replay: alpha (firm 0) would pay
    // 60 into the circuit with 30 of headroom.
    let mut bad = record.clone();
    for f in &mut bad.firms {
        f.payment_minor *= 2;
    }
    let d = w.defect(bad, true);
    assert!(
        matches!(
            d,
            ClearingDefect::Credit(CertificateError::OverCapacity {
                arc: ArcRef::Pay { firm: 0 },
                flow: 6_000,
                capacity: 3_000
            })
        ),
        "{d:?}"
    );
    // The same record checked as a run without credit.
    let rejection = clearing::check(&w.before_last, false, &record).expect_err("refused");
    assert_eq!(
        rejection,
        Rejection::ClearingInvalid { defect: Box::new(ClearingDefect::CreditOptionDiffers) }
    );
}

/// A member's headroom in a clearing run is its group's limit, not its own, and a change
/// of the group after a run was planned makes the plan stale, though no entry touched the
/// member.
#[test]
fn clearing_with_credit_uses_a_members_group_limit() {
    let mut w = World::new(3_000);
    let group = GroupName::parse("small").unwrap();
    w.admin_op(OpKind::CreateGroup(GroupLimits {
        group: group.clone(),
        credit_limit_minor: 1_000,
        max_balance_minor: None,
        reason: "statutes".into(),
    }))
    .unwrap();
    w.admin_op(OpKind::AssignGroup { account: id("alpha"), group: group.clone(), reason: "size".into() })
        .unwrap();
    // alpha owes beta 50, beta owes gamma 50. alpha pays what its group's limit allows
    // (10, not its own 30); beta pays its own 30 more, so gamma receives 40.
    w.obligation(1, "beta", "alpha", 5_000, None);
    w.obligation(2, "gamma", "beta", 5_000, None);
    let snapshot = ClearingSnapshot::take(w.ledger.state());
    let planned = clearing::plan(snapshot, true).unwrap();
    let entry = w.clear(true).unwrap();
    assert_eq!(World::record_of(&entry), planned.record, "planned on a snapshot, the same run");
    assert_eq!((w.open(1), w.open(2)), (4_000, 1_000));
    assert_eq!((w.balance("alpha"), w.balance("beta"), w.balance("gamma")), (-1_000, -3_000, 4_000));
    w.replay_with_last_record(Some(World::record_of(&entry))).unwrap();
    // Planned again, then the group's limit changes: the plan no longer holds.
    let mut w = World::new(3_000);
    w.admin_op(OpKind::CreateGroup(GroupLimits {
        group: group.clone(),
        credit_limit_minor: 1_000,
        max_balance_minor: None,
        reason: "statutes".into(),
    }))
    .unwrap();
    w.admin_op(OpKind::AssignGroup { account: id("alpha"), group: group.clone(), reason: "size".into() })
        .unwrap();
    w.obligation(1, "beta", "alpha", 5_000, None);
    w.obligation(2, "gamma", "beta", 5_000, None);
    let planned = clearing::plan(ClearingSnapshot::take(w.ledger.state()), true).unwrap();
    w.changes = Some(ChangesSince::default());
    w.admin_op(OpKind::SetGroupLimits(SetGroupLimits {
        group,
        credit_limit_minor: Some(2_000),
        max_balance_minor: None,
        reason: "review".into(),
    }))
    .unwrap();
    let changes = w.changes.take().unwrap();
    assert!(!planned.still_holds(w.ledger.state(), &changes), "a group change makes a plan stale");
}

#[test]
fn frozen_firms_are_left_out_of_clearing() {
    let mut w = World::new(0);
    w.obligation(1, "alpha", "beta", 1_000, None);
    w.obligation(2, "beta", "alpha", 1_000, None);
    w.admin_op(OpKind::FreezeAccount { account: id("beta"), reason: "dispute".into() }).unwrap();
    rejected(w.clear(false), RejectCode::NothingToClear, "0 eligible obligations");
    w.admin_op(OpKind::UnfreezeAccount { account: id("beta"), reason: String::new() }).unwrap();
    w.clear(false).unwrap();
    assert_eq!((w.open(1), w.open(2)), (0, 0));
}

/// A run solved on a snapshot (as the node's planner does, away from the writer) and
/// confirmed on the state it is applied to, in time proportional to what changed since:
/// confirmed exactly when nothing the check reads changed in a way that matters, and never
/// when the full check would refuse it.
#[test]
fn a_run_planned_on_a_snapshot_is_applied_only_while_it_holds() {
    let admin = Keypair::from_seed(&[1; 32]);
    let transfer = |payer: &str, payee: &str, amount_minor| {
        OpKind::Transfer(Transfer {
            payer: id(payer),
            payee: id(payee),
            amount_minor,
            memo: String::new(),
            invoice_ref: None,
            invoice: None,
        })
    };
    // Each case: the run's credit option, what happens between the snapshot and the
    // apply, and whether the plan should still hold.
    type Meanwhile = fn(&mut World, &dyn Fn(&str, &str, i64) -> OpKind);
    let cases: [(&str, bool, Meanwhile, bool); 8] = [
        ("nothing", false, |_, _| {}, true),
        (
            "a transfer, set-off",
            false,
            |w, t| {
                w.as_firm("alpha", t("alpha", "beta", 100)).unwrap();
            },
            true,
        ),
        (
            "an invoice only issued",
            false,
            |w, _| {
                w.issue(9, "alpha", "beta", 500, 100, None).unwrap();
            },
            true,
        ),
        ("a new obligation", false, |w, _| w.obligation(9, "alpha", "beta", 500, None), false),
        (
            "an obligation paid in part",
            false,
            |w, _| {
                w.as_firm("beta", pay(1, "beta", "alpha", 100)).unwrap();
            },
            false,
        ),
        (
            "a firm frozen",
            false,
            |w, _| {
                w.admin_op(OpKind::FreezeAccount { account: id("gamma"), reason: "dispute".into() }).unwrap();
            },
            false,
        ),
        // With credit, on the chain alpha -> beta -> gamma, alpha pays its whole headroom
        // (30) into the circuit and 20 stay open: a transfer that gives alpha more room
        // makes the run no longer optimal; one between firms outside the run changes
        // nothing it reads.
        (
            "a transfer outside the run, with credit",
            true,
            |w, t| {
                w.as_firm("delta", t("delta", "gamma", 1_000)).unwrap();
            },
            true,
        ),
        (
            "a firm that paid its whole headroom gains more, with credit",
            true,
            |w, t| {
                w.as_firm("delta", t("delta", "alpha", 1_000)).unwrap();
            },
            false,
        ),
    ];
    for (name, with_credit, meanwhile, holds) in cases {
        let mut w = World::new(3_000);
        if with_credit {
            // alpha owes beta 50, beta owes gamma 50: only credit clears anything.
            w.obligation(1, "beta", "alpha", 5_000, None);
            w.obligation(2, "gamma", "beta", 5_000, None);
        } else {
            // A cycle of 50.
            w.obligation(1, "alpha", "beta", 10_000, None);
            w.obligation(2, "beta", "gamma", 7_000, None);
            w.obligation(3, "gamma", "alpha", 5_000, None);
        }
        let snapshot = ClearingSnapshot::take(w.ledger.state());
        let planned = clearing::plan(snapshot, with_credit).unwrap();
        w.changes = Some(ChangesSince::default());
        meanwhile(&mut w, &transfer);
        let changes = w.changes.take().unwrap();
        let confirmed = planned.still_holds(w.ledger.state(), &changes);
        let full = clearing::check(w.ledger.state(), with_credit, &planned.record);
        assert_eq!(confirmed, holds, "{name}: {full:?}");
        // Confirmed only if the full check passes (it may pass when the confirmation,
        // which reads only the changes, cannot tell: a new obligation that changes no
        // optimum is still a new problem).
        assert!(!confirmed || full.is_ok(), "{name}: confirmed, but the full check says {full:?}");
        if name.contains("gains more") {
            assert!(
                matches!(&full, Err(Rejection::ClearingInvalid { defect })
                    if matches!(**defect, ClearingDefect::Credit(_))),
                "{name}: the full check finds the run no longer optimal too: {full:?}"
            );
        }
        let run = OpKind::RunClearing(RunClearing { with_credit, reason: "monthly".into() });
        let applied = w.run_with(&admin, run, ClearingInput::Planned(&planned, &changes));
        if holds {
            let entry = applied.unwrap();
            assert_eq!(World::record_of(&entry), planned.record, "{name}");
            w.replay_with_last_record(Some(planned.record.clone())).unwrap();
        } else {
            assert_eq!(
                applied.unwrap_err(),
                Rejection::ClearingInvalid { defect: Box::new(ClearingDefect::PlanStale) },
                "{name}"
            );
        }
    }
    // An undone change leaves nothing known: the plan is planned again.
    let w = World::new(0);
    let planned = clearing::plan(ClearingSnapshot::take(w.ledger.state()), false);
    assert!(planned.is_err(), "nothing to clear");
    let mut w = World::new(0);
    w.obligation(1, "alpha", "beta", 1_000, None);
    w.obligation(2, "beta", "alpha", 1_000, None);
    let planned = clearing::plan(ClearingSnapshot::take(w.ledger.state()), false).unwrap();
    let mut changes = ChangesSince::default();
    assert!(planned.still_holds(w.ledger.state(), &changes));
    changes.undone();
    assert!(!planned.still_holds(w.ledger.state(), &changes));
}

/// The bounds on open invoices and on a clearing run's obligations and firms refuse with
/// their numbers; they are tightened here (they can only be tightened) so that they are
/// reached with a handful of invoices.
#[test]
fn the_bounds_on_open_invoices_and_clearing_runs_are_refusals_with_their_numbers() {
    use cercle_core::Bounds;
    let tight = |open, obligations, firms| Bounds {
        open_invoices_max: open,
        clearing_obligations_max: obligations,
        clearing_firms_max: firms,
        ..Bounds::default()
    };
    let mut w = World::new(0);
    w.ledger = w.ledger.clone().with_bounds(tight(2, 10, 10));
    w.issue(1, "alpha", "beta", 1_000, 100, None).unwrap();
    w.issue(2, "beta", "alpha", 1_000, 100, None).unwrap();
    rejected(
        w.issue(3, "alpha", "gamma", 1_000, 100, None),
        RejectCode::TooManyOpenInvoices,
        "2 open invoices",
    );
    // Loosening is not possible: the ledger's own bound stays the most.
    let loose = w.ledger.clone().with_bounds(tight(usize::MAX, usize::MAX, usize::MAX));
    assert_eq!(loose.state().bounds(), Bounds::default());

    // Three obligations among three firms: a run may take two obligations, then two firms.
    let mut w = World::new(0);
    w.obligation(1, "alpha", "beta", 1_000, None);
    w.obligation(2, "beta", "gamma", 1_000, None);
    w.obligation(3, "gamma", "alpha", 1_000, None);
    let all = w.ledger.clone();
    w.ledger = all.clone().with_bounds(tight(10, 2, 10));
    rejected(
        w.clear(false),
        RejectCode::TooManyObligations,
        "3 obligations are eligible for clearing, the maximum for one run is 2",
    );
    w.ledger = all.clone().with_bounds(tight(10, 10, 2));
    rejected(w.clear(false), RejectCode::TooManyObligations, "the maximum for one run is 2");
    w.ledger = all;
    w.clear(false).unwrap();
}
