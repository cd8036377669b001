import { applyPromotion, challengerWins, evaluationTags, testTableTag, type ApplyPromotionInput } from '../../activities/promotion';
import type { MlflowRegistry } from '../../platform/registry/mlflow-registry';
import type { PromotionOutcome } from '../../workflows/types';
import { quietActivityEnvironment } from '../helpers/fixtures';
import { ProjectConfigSchema } from '../../config/schema';
import { loadProjectConfig } from '../../config/load';

const TEST = { catalog: 'mlops_dev', schema: 'acikgozm', name: 'test_set', version: 4 };

describe('challengerWins', () => {
  it.each([
    ['roc_auc', 0, 0.91, 0.9, true],
    ['roc_auc', 0, 0.9, 0.9, false],
    ['roc_auc', 0, 0.89, 0.9, false],
    ['roc_auc', 0.01, 0.905, 0.9, false],
    ['roc_auc', 0.01, 0.915, 0.9, true],
    ['accuracy', 0, 0.8249, 0.8201, true],
    ['log_loss', 0, 0.3, 0.35, true],
    ['log_loss', 0, 0.4, 0.35, false],
    ['log_loss', 0.1, 0.3, 0.35, false],
  ] as const)('%s margin %d: %d against %d is %s', (metric, margin, challenger, champion, expected) => {
    expect(challengerWins(metric, margin, challenger, champion)).toBe(expected);
  });

  it('compares unrounded scores', () => {
    // The original rounded accuracy to 2 decimals: 0.8249 and 0.8201 both became 0.82 and tied.
    expect(challengerWins('accuracy', 0, 0.8249, 0.8201)).toBe(true);
    expect(challengerWins('accuracy', 0, 0.8201, 0.8249)).toBe(false);
  });
});

describe('evaluation tags', () => {
  it('names the test table version and every metric', () => {
    expect(testTableTag(TEST)).toBe('mlops_dev.acikgozm.test_set@4');
    expect(evaluationTags(TEST, { roc_auc: 0.9012, log_loss: 0.31 })).toEqual({
      'mlops.test_table': 'mlops_dev.acikgozm.test_set@4',
      'mlops.metric.roc_auc': '0.9012',
      'mlops.metric.log_loss': '0.31',
    });
  });
});

describe('promotion config', () => {
  const config = loadProjectConfig();

  it('defaults to roc_auc with champion and no approval', () => {
    expect(config.registry.promotion).toEqual({
      champion_alias: 'champion',
      metric: 'roc_auc',
      margin: 0,
      approval: { required: false, timeout_hours: 24, on_timeout: 'reject' },
    });
  });

  it('rejects a champion alias equal to the latest alias', () => {
    const broken = { ...config, registry: { ...config.registry, promotion: { ...config.registry.promotion, champion_alias: 'latest-model' } } };
    const parsed = ProjectConfigSchema.safeParse(broken);
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0].message).toMatch(/alias and promotion.champion_alias must differ/);
  });

  it('rejects an unknown metric', () => {
    const broken = { ...config, registry: { ...config.registry, promotion: { ...config.registry.promotion, metric: 'auc' } } };
    const parsed = ProjectConfigSchema.safeParse(broken);
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0].path).toEqual(['registry', 'promotion', 'metric']);
  });
});

describe('applyPromotion', () => {
  function fakeRegistry(champion: string | undefined) {
    const calls = { aliases: [] as string[], tags: {} as Record<string, string> };
    const registry = {
      getVersionByAlias: async () => (champion ? { name: 'm', version: champion } : undefined),
      setAlias: async (_name: string, _alias: string, version: string) => void calls.aliases.push(version),
      setVersionTags: async (_name: string, _version: string, tags: Record<string, string>) => void Object.assign(calls.tags, tags),
    } as unknown as MlflowRegistry;
    return { registry, calls };
  }
  const input: ApplyPromotionInput = {
    modelName: 'm',
    version: '3',
    championAlias: 'champion',
    decision: {
      decision: 'promote',
      promote: true,
      metric: 'roc_auc',
      margin: 0,
      challengerVersion: '3',
      challengerScore: 0.93,
      championVersion: '1',
      championScore: 0.9,
      testTable: 't@1',
      championRescored: false,
    },
    approval: { status: 'approved', by: 'ana', reason: 'checked the plots' },
  };
  const apply = (registry: MlflowRegistry) =>
    quietActivityEnvironment().run(applyPromotion, registry, input) as Promise<PromotionOutcome>;

  it('moves the alias and records who decided and why', async () => {
    const { registry, calls } = fakeRegistry('1');
    const outcome = await apply(registry);
    expect(outcome.promoted).toBe(true);
    expect(calls.aliases).toEqual(['3']);
    expect(calls.tags).toMatchObject({
      'mlops.promotion.outcome': 'champion',
      'mlops.promotion.decided_by': 'ana',
      'mlops.promotion.reason': 'checked the plots',
    });
  });

  it('keeps a champion that changed while the promotion waited', async () => {
    const { registry, calls } = fakeRegistry('2');
    const outcome = await apply(registry);
    expect(outcome.promoted).toBe(false);
    expect(outcome.championVersionAfter).toBe('2');
    expect(calls.aliases).toEqual([]);
    expect(calls.tags['mlops.promotion.outcome']).toBe('not_promoted_champion_changed');
  });
});
