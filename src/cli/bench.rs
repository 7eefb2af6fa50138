//! `roamlab bench-attach` (hidden): drives the real VLR and HLR agents of a running lab
//! with in-process terminals on the cell socket, so attach latency is measured without
//! namespace creation. Used by scripts/bench-attach.sh.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::agents::terminal::Terminal;
use crate::protocols::milenage::Milenage;
use crate::topology::Subscriber;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Driver {
    imsi: String,
    keys: Milenage,
    sqn_ms: u64,
}

impl Driver {
    fn of(s: &Subscriber) -> Self {
        Driver {
            imsi: s.imsi.clone(),
            keys: Milenage::new(&s.k, &s.opc),
            sqn_ms: 0,
        }
    }

    async fn attach(&mut self, cell: &std::path::Path) -> Result<Terminal> {
        let mut t = Terminal::connect(cell, &self.imsi).await?;
        t.attach(&self.keys, &mut self.sqn_ms, None)
            .await
            .with_context(|| format!("attach of {}", self.imsi))?;
        Ok(t)
    }
}

pub fn run(
    lab: &str,
    visited: &str,
    cycles: usize,
    concurrent: usize,
    rounds: usize,
) -> Result<()> {
    let dir = crate::contract::LabDir::of(lab);
    let topology =
        crate::contract::model::read_or_parse(&dir).context("read the lab's topology")?;
    let cell = dir.cell_socket(visited);
    let roaming: Vec<&Subscriber> = topology.subscribers.iter().filter(|s| s.roaming).collect();
    if roaming.len() < concurrent.max(1) {
        bail!(
            "the lab has {} roaming subscribers; {concurrent} are needed",
            roaming.len()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Sequential attach + detach cycles of one terminal.
        let mut one = Driver::of(roaming[0]);
        let (mut attach, mut detach, mut cycle) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..cycles {
            let t0 = Instant::now();
            let mut t = one.attach(&cell).await?;
            let t1 = Instant::now();
            t.detach().await?;
            let t2 = Instant::now();
            attach.push(t1 - t0);
            detach.push(t2 - t1);
            cycle.push(t2 - t0);
        }
        for v in [&mut attach, &mut detach, &mut cycle] {
            v.sort();
        }
        println!("sequential: {cycles} attach+detach cycles of one terminal (no namespace creation)");
        for (name, v) in [("attach", &attach), ("detach", &detach), ("attach+detach", &cycle)] {
            println!("  {name:<14} p50 {:7.3} ms   p99 {:7.3} ms   max {:7.3} ms", ms(percentile(v, 50.0)), ms(percentile(v, 99.0)), ms(percentile(v, 100.0)));
        }

        // Many terminals at once.
        let mut drivers: Vec<Driver> = roaming.iter().take(concurrent).map(|s| Driver::of(s)).collect();
        let mut rates = Vec::new();
        for _ in 0..rounds {
            let t0 = Instant::now();
            let attached = futures::future::join_all(drivers.iter_mut().map(|d| {
                let cell = cell.clone();
                async move { d.attach(&cell).await }
            }))
            .await;
            let took = t0.elapsed();
            let mut terminals = Vec::new();
            for a in attached {
                terminals.push(a?);
            }
            rates.push(concurrent as f64 / took.as_secs_f64());
            futures::future::join_all(terminals.iter_mut().map(|t| t.detach())).await;
        }
        rates.sort_by(|a, b| a.total_cmp(b));
        println!(
            "concurrent: {concurrent} terminals attaching at once, {rounds} rounds: median {:.0} attaches/s (min {:.0}, max {:.0})",
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1]
        );
        Ok::<_, anyhow::Error>(())
    })
}
