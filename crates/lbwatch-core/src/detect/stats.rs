//! The statistical building blocks, each a pure function of its arguments.
//! Distributions come from `statrs`; nothing here keeps state.

use statrs::distribution::{Binomial, ChiSquared, ContinuousCDF, DiscreteCDF, Poisson};

/// Weight of the past after `dt` seconds in an exponentially decayed sum
/// with time constant `tau`.
pub fn decay(dt: f64, tau: f64) -> f64 {
    (-dt.max(0.0) / tau).exp()
}

/// G-test (log-likelihood ratio) statistic of observed counts against
/// expected proportions; the expected counts are scaled to the observed
/// total. Cells with zero expectation are skipped. Returns `(G, degrees of
/// freedom)`.
pub fn g_statistic(observed: &[f64], expected_share: &[f64]) -> (f64, usize) {
    let total: f64 = observed.iter().sum();
    let share_sum: f64 = expected_share.iter().sum();
    if total <= 0.0 || share_sum <= 0.0 {
        return (0.0, 0);
    }
    let mut g = 0.0;
    let mut cells = 0usize;
    for (&o, &p) in observed.iter().zip(expected_share) {
        if p <= 0.0 {
            continue;
        }
        cells += 1;
        if o > 0.0 {
            g += o * (o / (total * p / share_sum)).ln();
        }
    }
    (2.0 * g, cells.saturating_sub(1))
}

/// P(chi-square with `df` degrees of freedom >= x).
pub fn chi2_sf(x: f64, df: usize) -> f64 {
    if df == 0 || x <= 0.0 {
        return 1.0;
    }
    ChiSquared::new(df as f64).map_or(1.0, |d| d.sf(x))
}

/// P(X >= k) for X ~ Binomial(n, p); counts are rounded to whole requests.
pub fn binomial_at_least(k: f64, n: f64, p: f64) -> f64 {
    let (k, n) = (k.round(), n.round().max(0.0));
    if k <= 0.0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    Binomial::new(p.clamp(0.0, 1.0), n as u64).map_or(1.0, |d| d.sf(k as u64 - 1))
}

/// P(X <= k) for X ~ Binomial(n, p); counts are rounded to whole requests.
pub fn binomial_at_most(k: f64, n: f64, p: f64) -> f64 {
    let (k, n) = (k.round().max(0.0), n.round().max(0.0));
    if k >= n {
        return 1.0;
    }
    Binomial::new(p.clamp(0.0, 1.0), n as u64).map_or(1.0, |d| d.cdf(k as u64))
}

/// P(X <= k) for X ~ Poisson(mean).
pub fn poisson_at_most(k: f64, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 1.0;
    }
    Poisson::new(mean).map_or(1.0, |d| d.cdf(k.round().max(0.0) as u64))
}

/// Effective number of servers, 1 / sum of squared shares: 1 when one server
/// takes everything, N when N servers share equally. `None` without traffic.
pub fn effective_servers(counts: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut sum, mut sq) = (0.0, 0.0);
    for c in counts {
        sum += c;
        sq += c * c;
    }
    (sum > 0.0 && sq > 0.0).then(|| sum * sum / sq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    #[test]
    fn g_statistic_is_zero_for_a_perfect_fit_and_grows_with_misfit() {
        assert_eq!(g_statistic(&[10.0, 20.0], &[1.0, 2.0]), (0.0, 1));
        let (g, df) = g_statistic(&[30.0, 0.0, 0.0, 0.0], &[0.25; 4]);
        assert_eq!(df, 3);
        assert!(close(g, 2.0 * 30.0 * 4f64.ln(), 1e-12));
        // A zero-expectation cell (a drained server) takes no part.
        assert_eq!(g_statistic(&[10.0, 20.0, 5.0], &[1.0, 2.0, 0.0]).1, 1);
        assert_eq!(g_statistic(&[0.0, 0.0], &[0.5, 0.5]), (0.0, 0));
    }

    #[test]
    fn tail_probabilities_match_known_values() {
        assert!(close(chi2_sf(3.841_458_820_694_124, 1), 0.05, 1e-9));
        assert_eq!(chi2_sf(0.0, 3), 1.0);
        // P(X >= 1) for Bin(33, 0.001) = 1 - 0.999^33
        assert!(close(
            binomial_at_least(1.0, 33.0, 0.001),
            1.0 - 0.999f64.powi(33),
            1e-9
        ));
        assert_eq!(binomial_at_least(0.0, 10.0, 0.5), 1.0);
        assert_eq!(binomial_at_least(11.0, 10.0, 0.5), 0.0);
        assert!(close(
            binomial_at_most(0.0, 10.0, 0.5),
            0.5f64.powi(10),
            1e-9
        ));
        assert!(close(poisson_at_most(0.0, 2.5), (-2.5f64).exp(), 1e-9));
    }

    #[test]
    fn effective_servers_counts_how_many_share_the_load() {
        assert_eq!(
            effective_servers([5.0, 5.0, 5.0, 5.0].into_iter()),
            Some(4.0)
        );
        assert_eq!(effective_servers([9.0, 0.0, 0.0].into_iter()), Some(1.0));
        assert_eq!(effective_servers([0.0, 0.0].into_iter()), None);
    }
}
