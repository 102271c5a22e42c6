//! `cercle admin profile`: change a firm's display name or profile (sector, commune,
//! postcode, territory, size class), with a reason that stays in the ledger. The profile
//! flags are shared with `cercle admin register`.

use cercle_core::profile::{Field, Profile, ProfileChange};
use cercle_core::{AccountId, OpKind, SetProfile};

use crate::client::Node;
use crate::failure::usage;
use crate::signed::{self, SignArgs, parse_account};
use crate::{Global, keys};

/// The profile flags of `register` and `profile`. In `profile`, an empty value removes the
/// field; every value is checked as the ledger checks it before anything is signed.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProfileArgs {
    /// The firm's sector: a NACE rev. 2 section (C), division (10) or class (10.71)
    #[arg(long, value_name = "CODE")]
    sector: Option<String>,
    /// The firm's commune: its INSEE code, e.g. 75056 (Paris), 2A004 (Ajaccio)
    #[arg(long, value_name = "CODE")]
    commune: Option<String>,
    /// The firm's postcode, five digits
    #[arg(long, value_name = "P")]
    postcode: Option<String>,
    /// A free territory label, e.g. a "bassin de vie" (at most 64 characters)
    #[arg(long, value_name = "LABEL")]
    territory: Option<String>,
    /// The firm's size by employees: 0, 1-9, 10-49, 50-249 or 250+
    #[arg(long, value_name = "C")]
    size_class: Option<String>,
}

impl ProfileArgs {
    fn fields(&self) -> [(Field, &Option<String>, &'static str); 5] {
        [
            (Field::Sector, &self.sector, "--sector"),
            (Field::Commune, &self.commune, "--commune"),
            (Field::Postcode, &self.postcode, "--postcode"),
            (Field::Territory, &self.territory, "--territory"),
            (Field::SizeClass, &self.size_class, "--size-class"),
        ]
    }

    /// The profile of a registration; every value given is checked.
    pub fn profile(&self) -> anyhow::Result<Profile> {
        let mut profile = Profile::default();
        for (field, value, flag) in self.fields() {
            if let Some(value) = value {
                field.check(value).map_err(|e| usage(format!("{flag}: {e}")))?;
                *profile.slot(field) = Some(value.clone());
            }
        }
        Ok(profile)
    }

    /// A change of profile: a value sets the field, an empty value removes it.
    pub fn change(&self) -> anyhow::Result<ProfileChange> {
        let mut change = ProfileChange::default();
        for (field, value, flag) in self.fields() {
            if let Some(value) = value {
                if !value.is_empty() {
                    field.check(value).map_err(|e| usage(format!("{flag}: {e}")))?;
                }
                *change.slot(field) = Some((!value.is_empty()).then(|| value.clone()));
            }
        }
        Ok(change)
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The account whose profile changes
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
    /// The firm's new name as people read it
    #[arg(long, value_name = "N")]
    name: Option<String>,
    #[command(flatten)]
    profile: ProfileArgs,
    /// Why the profile changes (kept in the ledger)
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let profile = args.profile.change()?;
    if args.name.is_none() && profile.is_empty() {
        crate::usage_bail!(
            "nothing to change: give --name, --sector, --commune, --postcode, --territory or --size-class (an empty value removes a field)"
        );
    }
    let kind = OpKind::SetProfile(SetProfile {
        account: args.account,
        display_name: args.name,
        profile,
        reason: args.reason,
    });
    // The ledger's own checks (reason, name), before anything is signed.
    cercle_core::state::check_values(&kind).map_err(|r| usage(r.message("", 0)))?;
    let mut node = Node::connect(&global.node).await?;
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}
